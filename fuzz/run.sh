#!/usr/bin/env bash
# Runs one fuzz target for SECONDS (default 1800) on one core, with the
# input size its files need, and logs to logs/<target>.log. Findings land
# in artifacts/<target>/.
# Usage: fuzz/run.sh TARGET [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
target=$1
seconds=${2:-1800}
case $target in
    fer2013_csv) max_len=65536 ;;     # a row holds 2,304 pixels
    image) max_len=262144 ;;
    model_text) max_len=8192 ;;
    *) max_len=4096 ;;                # the edit lists of the file targets
esac
mkdir -p logs "corpus/$target"
cargo +nightly fuzz run "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=4096 \
    -print_final_stats=1 2>&1 | tee "logs/$target.log"
