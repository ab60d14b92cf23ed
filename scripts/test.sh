#!/usr/bin/env bash
# The project's test command: installs what the tests need beyond a Rust
# toolchain, checks the formatting and clippy's lints, then runs every test
# of every crate but the benchmarks (which build tract-onnx to compare with). On a fresh Debian or Ubuntu machine it
# needs nothing else: the video tests drive the `ffmpeg` and `ffprobe`
# command-line tools (Debian package `ffmpeg`), which are installed here with
# apt-get when missing (as root, or through sudo). The tests also read the
# reference files in ../shared beside the checkout.
#
# Arguments go to `cargo test`, e.g. `bash scripts/test.sh --test video`.
# Clippy checks the benchmarks too, without building tract-onnx's code.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
    echo "scripts/test.sh: installing ffmpeg (the video tests need it)" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null; then
            echo "scripts/test.sh: ffmpeg is missing and this user can neither run apt-get nor sudo;" >&2
            echo "install the Debian package ffmpeg, then run this again" >&2
            exit 1
        fi
        sudo="sudo"
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends ffmpeg
fi
ffmpeg -version | head -n 1

if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    echo "scripts/test.sh: adding the toolchain's rustfmt and clippy components" >&2
    rustup component add rustfmt clippy || {
        echo "scripts/test.sh: this toolchain lacks rustfmt or clippy and rustup cannot add them" >&2
        exit 1
    }
fi
cargo --version
rustc --version
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo test --locked --workspace --exclude mini-xception-benches "$@"
