#!/usr/bin/env bash
# Two builds of `mini-xception` side by side on the detector: alternating
# rounds of `detect --threads 1 --repeat 5 --min-size 48` on the five
# reference photos, each build pinned to core 0, and per photo the minimum
# of its rounds' medians (the machine is shared and noisy: the minimum is
# the run least disturbed). Prints each photo's times, each build's total,
# and whether the two found the same number of faces everywhere.
#
#   bash scripts/compare_builds.sh OLD_BINARY NEW_BINARY [rounds]
#
# Make the two binaries with `cargo build --release` at each commit and copy
# target/release/mini-xception aside. Pause anything heavy (a training run:
# `kill -STOP`) while it runs. Needs taskset (util-linux) and python3.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
photos=("$root"/../shared/reference/images/*)
old="$1"
new="$2"
rounds="${3:-6}"
for binary in "$old" "$new"; do
    [ -x "$binary" ] || { echo "$binary: not an executable" >&2; exit 1; }
done

out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for _ in $(seq "$rounds"); do
    for build in old new; do
        binary=$([ "$build" = old ] && echo "$old" || echo "$new")
        taskset -c 0 "$binary" detect --threads 1 --repeat 5 --min-size 48 --json \
            "${photos[@]}" | sed "s/^/$build /" >> "$out"
    done
done

python3 - "$out" <<'EOF'
import json, sys
best, faces = {}, {}
for line in open(sys.argv[1]):
    build, report = line.split(" ", 1)
    report = json.loads(report)
    photo = report["path"].rsplit("/", 1)[-1]
    key = (build, photo)
    best[key] = min(best.get(key, float("inf")), report["ms_median"])
    faces.setdefault(photo, set()).add(len(report["boxes"]))
photos = sorted(faces)
for photo in photos:
    print(f"{photo:30} old {best[('old', photo)]:8.2f} ms   new {best[('new', photo)]:8.2f} ms")
old = sum(best[("old", p)] for p in photos)
new = sum(best[("new", p)] for p in photos)
print(f"{'total':30} old {old:8.2f} ms   new {new:8.2f} ms   new/old {new / old:.3f}")
same = all(len(counts) == 1 for counts in faces.values())
print("same face counts in every run" if same else "FACE COUNTS DIFFER between builds")
EOF
