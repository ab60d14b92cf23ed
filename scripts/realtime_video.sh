#!/usr/bin/env bash
# The real-time check: a 640x480 clip of 150 frames (5 s at 30 fps) panned
# across ../shared/reference/images/12_angry_men.jpg, with 2 to 5 faces per
# frame, run through `mini-xception video` on one core: detection at scale
# factor 1.3, 5 neighbours and faces of at least 48 pixels, then emotion and
# gender for every face. `taskset -c 0` pins everything, ffmpeg's decoding
# included, to one core; `--threads 1` keeps the detector on one thread.
#
#   bash scripts/realtime_video.sh [runs]
#
# Needs ffmpeg, taskset (util-linux) and a release build (`cargo build --release`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shared="$root/../shared"
binary="$root/target/release/mini-xception"
runs="${1:-3}"
[ -x "$binary" ] || { echo "run \`cargo build --release\` first" >&2; exit 1; }

folder="$(mktemp -d)"
trap 'rm -rf "$folder"' EXIT
clip="$folder/pan_640x480.mp4"
ffmpeg -v error -y -loop 1 -framerate 30 -i "$shared/reference/images/12_angry_men.jpg" \
    -vf "crop=640:480:'min(n*8,640)':100" -frames:v 150 -c:v libx264 -pix_fmt yuv420p "$clip"

for run in $(seq "$runs"); do
    taskset -c 0 "$binary" video --threads 1 --min-size 48 \
        --cascade "$shared/models/haarcascade_frontalface_default.xml" \
        --weights "$shared/models/fer2013_mini_XCEPTION.102-0.66.hdf5" \
        --gender-weights "$shared/models/gender_mini_XCEPTION.21-0.95.hdf5" \
        "$clip" 2>&1 >/dev/null | sed "s/^mini-xception: /run $run: /"
done
