#!/usr/bin/env python3
"""Measures ONNX Runtime on the paper's emotion model (the ONNX export in
../shared/models) beside `mini-xception bench`, alternating the two several
times in one run because the machine is shared and noisy, and prints both
and their ratio.

    python3 scripts/compare_onnxruntime.py [--rounds 3] [--seconds 4]

Needs `pip install onnxruntime numpy` and a release build
(`cargo build --release`). ONNX Runtime runs with all graph optimizations,
one image per call for latency, and batches of 64 for throughput, with 1 and
2 intra-op threads, as `mini-xception bench` does with 1 and 2 threads.
Each rate is also given as a fraction of the machine's FMA peak, which
`mini-xception bench` measures (one thread's, times the threads).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
ONNX = ROOT.parent / "shared" / "models" / "mini_xception_fer2013.onnx"
BINARY = ROOT / "target" / "release" / "mini-xception"


def session(threads):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(ONNX), options, providers=["CPUExecutionProvider"])


def ort_latency_ms(seconds):
    s = session(1)
    name = s.get_inputs()[0].name
    x = np.random.default_rng(0).uniform(-1, 1, (1, 64, 64, 1)).astype(np.float32)
    for _ in range(50):
        s.run(None, {name: x})
    samples = []
    start = time.perf_counter()
    while len(samples) < 1000 or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        s.run(None, {name: x})
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e3


def ort_images_per_s(threads, batch, seconds):
    s = session(threads)
    name = s.get_inputs()[0].name
    x = np.random.default_rng(0).uniform(-1, 1, (batch, 64, 64, 1)).astype(np.float32)
    s.run(None, {name: x})
    images, start = 0, time.perf_counter()
    while images == 0 or time.perf_counter() - start < seconds:
        s.run(None, {name: x})
        images += batch
    return images / (time.perf_counter() - start)


def ours(threads, batch, seconds, model="emotion", isa=None):
    out = subprocess.run(
        [str(BINARY), "bench", "--model", model, "--threads", str(threads), "--batch", str(batch),
         "--seconds", str(seconds), "--json"] + (["--isa", isa] if isa else []),
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--isa", help="mini-xception's instruction set (default: its own choice)")
    args = parser.parse_args()
    if not BINARY.exists():
        sys.exit(f"{BINARY} is missing: run `cargo build --release` first")
    rows = {k: [] for k in ["ort_lat", "our_lat", "ort_1t", "our_1t", "ort_2t", "our_2t", "peak"]}
    isa, macs = None, None
    for _ in range(args.rounds):
        # Alternate the engines so that both see the same machine load.
        rows["ort_lat"].append(ort_latency_ms(args.seconds / 2))
        one = ours(1, args.batch, args.seconds, isa=args.isa)
        isa, macs = one["isa"], one["macs_per_image"]
        rows["peak"].append(one["peak_macs_per_s"])
        rows["our_lat"].append(one["latency_ms_median"])
        rows["our_1t"].append(one["images_per_s"])
        rows["ort_1t"].append(ort_images_per_s(1, args.batch, args.seconds / 2))
        rows["our_2t"].append(ours(2, args.batch, args.seconds, isa=args.isa)["images_per_s"])
        rows["ort_2t"].append(ort_images_per_s(2, args.batch, args.seconds / 2))
    med = {k: statistics.median(v) for k, v in rows.items()}
    peak = med["peak"]

    # Both engines run the same model, so one count of multiply-adds serves
    # both; the peak is one thread's, measured by `mini-xception bench`.
    def of_peak(images_per_s, threads):
        return f"{100 * images_per_s * macs / (peak * threads):.0f}%"

    print(f"emotion model 64x64x1 ({macs:,} multiply-adds), float32, ONNX Runtime {ort.__version__}, "
          f"mini-xception isa={isa}, {args.rounds} alternating rounds, medians; "
          f"measured FMA peak {peak / 1e9:.1f} GMAC/s per thread")
    print("| measure | ONNX Runtime | mini-xception | ratio | ONNX Runtime, of peak | mini-xception, of peak |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| 1 image, 1 thread (ms, median) | {med['ort_lat']:.3f} | {med['our_lat']:.3f} | "
          f"{med['our_lat'] / med['ort_lat']:.2f}x the time | "
          f"{of_peak(1e3 / med['ort_lat'], 1)} | {of_peak(1e3 / med['our_lat'], 1)} |")
    print(f"| images/s, 1 thread, batch {args.batch} | {med['ort_1t']:.0f} | {med['our_1t']:.0f} | "
          f"{med['our_1t'] / med['ort_1t']:.2f}x | {of_peak(med['ort_1t'], 1)} | {of_peak(med['our_1t'], 1)} |")
    print(f"| images/s, 2 threads, batch {args.batch} | {med['ort_2t']:.0f} | {med['our_2t']:.0f} | "
          f"{med['our_2t'] / med['ort_2t']:.2f}x | {of_peak(med['ort_2t'], 2)} | {of_peak(med['our_2t'], 2)} |")


if __name__ == "__main__":
    main()
