#!/usr/bin/env python3
"""Times OpenCV's Haar cascade detector (`CascadeClassifier.detectMultiScale`)
beside `mini-xception detect` on the reference photos, for every setting in
../shared/reference/faces_opencv.json plus the video setting (640x480 pieces
of the photos, minimum face 48 pixels), alternating the two in one run because
the machine is shared and noisy. Prints both medians and their ratio, and
checks that both found the same number of faces.

    python3 scripts/compare_opencv.py [--repeat 7] [--rounds 2] [--threads 1]

Needs `pip install opencv-python-headless numpy pillow` and a release build
(`cargo build --release`). Both get the same grayscale image: Pillow's
`convert('L')` of the decoded file, as the reference does (ours decodes JPEG
with the `image` crate, which can differ by one grey level on a few pixels).
OpenCV runs with `cv2.setNumThreads(threads)`, ours with `--threads`.
"""
import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CASCADE = SHARED / "models" / "haarcascade_frontalface_default.xml"
BINARY = ROOT / "target" / "release" / "mini-xception"


def opencv_ms(classifier, gray, params, repeat):
    min_size = tuple(params.get("minSize", (0, 0)))
    times, boxes = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        boxes = classifier.detectMultiScale(
            gray, params["scaleFactor"], params["minNeighbors"], minSize=min_size
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3, len(boxes)


def ours_ms(path, params, repeat, threads):
    min_size = params.get("minSize", (0, 0))
    if min_size[0] != min_size[1]:
        raise SystemExit("mini-xception detect takes square minimum sizes only")
    command = [
        str(BINARY), "detect", "--json", "--cascade", str(CASCADE),
        "--scale-factor", str(params["scaleFactor"]),
        "--min-neighbors", str(params["minNeighbors"]),
        "--min-size", str(min_size[0]),
        "--repeat", str(repeat), "--threads", str(threads), str(path),
    ]
    result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    return result["ms_median"], len(result["boxes"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="detections per median")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not BINARY.exists():
        raise SystemExit(f"{BINARY} is missing: run `cargo build --release` first")
    cv2.setNumThreads(args.threads)
    classifier = cv2.CascadeClassifier(str(CASCADE))
    reference = json.loads((SHARED / "reference" / "faces_opencv.json").read_text())

    with tempfile.TemporaryDirectory() as folder:
        cases = []
        for image in reference["images"]:
            path = SHARED / "reference" / "images" / image["file"]
            gray = np.asarray(Image.open(path).convert("L"))
            png = Path(folder) / (path.stem + ".png")
            Image.fromarray(gray).save(png)
            for run in image["runs"]:
                cases.append((image["file"], gray, png, run["params"]))
            # The video setting on a 640x480 piece from the photo's top left.
            piece = gray[:480, :640]
            piece_png = Path(folder) / (path.stem + "_640x480.png")
            Image.fromarray(piece).save(piece_png)
            video = {"scaleFactor": 1.3, "minNeighbors": 5, "minSize": [48, 48]}
            cases.append((image["file"] + " 640x480", piece, piece_png, video))

        print(f"OpenCV {cv2.__version__}, {args.threads} thread(s) each, "
              f"median of {args.repeat} per round, {args.rounds} rounds alternating")
        header = f"{'image':<36} {'setting':<18} {'OpenCV ms':>10} {'ours ms':>9} {'ratio':>6}  faces"
        print(header)
        print("-" * len(header))
        ratios = []
        for name, gray, png, params in cases:
            theirs, ours = [], []
            for _ in range(args.rounds):
                ms, opencv_faces = opencv_ms(classifier, gray, params, args.repeat)
                theirs.append(ms)
                ms, our_faces = ours_ms(png, params, args.repeat, args.threads)
                ours.append(ms)
            setting = f"{params['scaleFactor']}/{params['minNeighbors']}"
            if "minSize" in params:
                setting += f"/min {params['minSize'][0]}"
            theirs_ms, ours_ms_ = statistics.median(theirs), statistics.median(ours)
            ratio = theirs_ms / ours_ms_
            ratios.append(ratio)
            faces = f"{our_faces}" if our_faces == opencv_faces else f"{our_faces} vs {opencv_faces}"
            print(f"{name:<36} {setting:<18} {theirs_ms:>10.1f} {ours_ms_:>9.1f} {ratio:>5.2f}x  {faces}")
        geometric = float(np.exp(np.mean(np.log(ratios))))
        print(f"\nours is {geometric:.2f}x as fast as OpenCV (geometric mean over {len(ratios)} cases)")


if __name__ == "__main__":
    main()
