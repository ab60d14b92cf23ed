#!/usr/bin/env bash
# The real-time check: `mini-xception video` with emotion and gender for every
# face, on clips of 150 frames (5 s at 30 fps) panned across a reference photo:
#
#   640x480:  a window moving over 12_angry_men.jpg (1 to 5 faces a frame)
#   1280x720: the same photo scaled to 1600x900, a window moving over it
#             (4 to 8 faces a frame)
#
# Detection at scale factor 1.3, 5 neighbours and faces of at least 48
# pixels. Each clip runs on one core (`taskset -c 0`, `--threads 1`) and on
# two (`taskset -c 0,1`, `--threads 2`: two frames at a time); taskset pins
# ffmpeg's decoding to the same cores, so decoding is included. Prints each
# run, then the median frames/s of each case.
#
#   bash scripts/realtime_video.sh [runs]
#
# Needs ffmpeg, taskset (util-linux), two cores and a release build
# (`cargo build --release`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shared="$root/../shared"
binary="$root/target/release/mini-xception"
runs="${1:-3}"
[ -x "$binary" ] || { echo "run \`cargo build --release\` first" >&2; exit 1; }

folder="$(mktemp -d)"
trap 'rm -rf "$folder"' EXIT
photo="$shared/reference/images/12_angry_men.jpg"
ffmpeg -v error -y -loop 1 -framerate 30 -i "$photo" \
    -vf "crop=640:480:'min(n*8,640)':100" \
    -frames:v 150 -c:v libx264 -pix_fmt yuv420p "$folder/pan_640x480.mp4"
ffmpeg -v error -y -loop 1 -framerate 30 -i "$photo" \
    -vf "scale=1600:900,crop=1280:720:'min(n*3,320)':90" \
    -frames:v 150 -c:v libx264 -pix_fmt yuv420p "$folder/pan_1280x720.mp4"

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

summary=()
for clip in pan_640x480 pan_1280x720; do
    for cores in 1 2; do
        cpus=$([ "$cores" = 1 ] && echo 0 || echo 0,1)
        rates="$folder/rates"
        : > "$rates"
        for run in $(seq "$runs"); do
            line=$(taskset -c "$cpus" "$binary" video --threads "$cores" --min-size 48 \
                --cascade "$shared/models/haarcascade_frontalface_default.xml" \
                --weights "$shared/models/fer2013_mini_XCEPTION.102-0.66.hdf5" \
                --gender-weights "$shared/models/gender_mini_XCEPTION.21-0.95.hdf5" \
                "$folder/$clip.mp4" 2>&1 >/dev/null | tail -n 1)
            echo "$clip, $cores core(s), run $run: ${line#mini-xception: }"
            echo "$line" | sed -n 's/.* s: \([0-9.]*\) frames\/s;.*/\1/p' >> "$rates"
        done
        summary+=("$clip, $cores core(s): $(median < "$rates") frames/s (median of $runs)")
    done
done
printf '%s\n' "${summary[@]}"
