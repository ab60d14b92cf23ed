#!/usr/bin/env bash
# Two builds of `mini-xception` on the same inputs: every subcommand that
# writes a result (classify, eval, detect, faces, explain, video, train,
# recalibrate, summary, compile) runs with each binary on the reference files
# in ../shared, and the outputs are compared byte for byte (JSON lines, PNGs,
# weights, histories, generated code). Timings are the one thing that may
# differ, and are removed before comparing (see below). Prints one line per
# check and exits 1 if any differs.
#
#   bash scripts/compare_cli.sh OLD_BINARY NEW_BINARY
#
# Make the binaries with `cargo build --release` at each commit and copy
# target/release/mini-xception aside. The video check needs ffmpeg.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shared="$root/../shared"
old="$(realpath "$1")"
new="$(realpath "$2")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

images=("$shared"/reference/images/*)
cascade="$shared/models/haarcascade_frontalface_default.xml"
paper="$shared/models/fer2013_mini_XCEPTION.102-0.66.hdf5"
gender="$shared/models/gender_mini_XCEPTION.21-0.95.hdf5"
data="$shared/data/fer2013/fer2013.csv.gz"

# A short clip of the reference photos, one second each.
ffmpeg -loglevel error -framerate 1 -pattern_type glob -i "$shared/reference/images/*.jpg" \
    -vf "scale=640:480,format=yuv420p" -r 4 "$work/clip.mp4"

# Each check: a name and a command; `$BIN` is the binary, `$OUT` a fresh
# folder whose files are compared too.
checks=(
    "classify|\$BIN classify --json ${images[*]}"
    "classify-flip|\$BIN classify --json --tta flip ${images[*]}"
    "classify-paper|\$BIN classify --json --weights $paper ${images[*]}"
    "classify-gender|\$BIN classify --json --model gender --weights $gender ${images[*]}"
    "eval|\$BIN eval --json --data $data"
    "eval-ensemble|\$BIN eval --json --tta flip --data $data --weights builtin --weights $paper"
    "detect|\$BIN detect --json --cascade $cascade ${images[*]} | sed 's/, *\"ms_median\":[0-9.e+-]*//'"
    "faces|\$BIN faces --json --cascade $cascade --gender-weights $gender --out \$OUT ${images[*]}"
    "explain|\$BIN explain --out \$OUT --faces --cascade $cascade ${images[*]}"
    "explain-grad-cam|\$BIN explain --out \$OUT --method grad-cam --label happy ${images[*]}"
    "video|\$BIN video --json --cascade $cascade --out \$OUT/annotated.mp4 $work/clip.mp4 && \$BIN video --json --cascade $cascade $work/clip.mp4"
    "train|\$BIN train --quiet --data $data --out \$OUT/run --limit 256 --epochs 2 --batch 32 --seed 3 --threads 2 && \$BIN recalibrate --data $data --out \$OUT/recalibrated.safetensors \$OUT/run/last.checkpoint"
    "summary|\$BIN summary && \$BIN summary --model gender"
    "compile|for m in $root/models/*.yaml; do \$BIN compile \$m; done"
)

failed=0
for check in "${checks[@]}"; do
    name="${check%%|*}"
    command="${check#*|}"
    for build in old new; do
        binary=$([ "$build" = old ] && echo "$old" || echo "$new")
        out="$work/$build/$name"
        mkdir -p "$out"
        BIN="$binary" OUT="$out" bash -c "$command" > "$work/$build/$name.stdout" 2>&1 || {
            echo "$name ($build): failed, see below" >&2
            cat "$work/$build/$name.stdout" >&2
            failed=1
        }
    done
    # The run folders name themselves in their outputs. Timings differ
    # between any two runs: `train`'s seconds an epoch (its lines, the
    # history's last column, and the checkpoint, which records the history:
    # the checkpoint's weights are compared through `recalibrate`'s output
    # instead) and `video`'s closing frames-per-second line.
    for build in old new; do
        sed -i -E "s|$work/$build/$name|OUT|g; s/  [0-9.]+ s\$//; /frames\/s/d" "$work/$build/$name.stdout"
        find "$work/$build/$name" -name history.csv -exec sed -i 's/,[0-9.]*$//' {} +
        find "$work/$build/$name" -name last.checkpoint -delete
    done
    if diff -r "$work/old/$name" "$work/new/$name" > /dev/null &&
        diff "$work/old/$name.stdout" "$work/new/$name.stdout" > /dev/null; then
        files=$(find "$work/new/$name" -type f | wc -l)
        echo "same      $name ($(wc -c < "$work/new/$name.stdout") bytes of output, $files files)"
    else
        echo "DIFFERENT $name"
        diff -r "$work/old/$name" "$work/new/$name" | head -5 || true
        diff "$work/old/$name.stdout" "$work/new/$name.stdout" | head -5 || true
        failed=1
    fi
done
exit "$failed"
