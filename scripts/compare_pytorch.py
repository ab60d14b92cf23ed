#!/usr/bin/env python3
"""Compares training speed with PyTorch: trains the paper's emotion model
(models/mini_xception.yaml) in PyTorch and with `mini-xception train`,
alternating the two several times in one run because the machine is shared
and noisy, with 1 and 2 threads, and prints images/s for both (medians over
the rounds) and their ratio (ours / PyTorch; above 1 means ours is faster).

Install (PyTorch's PyPI wheel; it pulls CUDA libraries it does not use here):

    python3 -m venv /tmp/torch-venv
    /tmp/torch-venv/bin/pip install -r scripts/requirements-pytorch.txt

Run, after `cargo build --release`:

    /tmp/torch-venv/bin/python scripts/compare_pytorch.py --rounds 3

What is measured:

- PyTorch: the same network (base 2 x conv 3x3 valid + BN + ReLU; 4 residual
  separable modules of 16, 32, 64, 128 filters ending in a TensorFlow-'same'
  3x3/2 max-pool; head conv 3x3 with bias, global average pool), batch norm
  eps 1e-3 and momentum 0.01 (Keras' 0.99), cross-entropy plus 0.01 * sum(w^2)
  over the base kernels and the separable pointwise kernels, Adam (lr 1e-3,
  eps 1e-7), batch 32, on random inputs with a fixed seed. Each thread count
  runs in its own worker process (torch.set_num_threads(T), flush denormals).
  By default each worker first probes eager with contiguous and with
  channels_last tensors, and torch.compile with channels_last, twice in turn
  for --probe-steps steps each, and keeps the fastest (--mode and
  --memory-format force a setting; torch.compile's first compile takes a
  minute or two, later ones hit Inductor's cache). A measurement is 10
  warm-up steps, then the same number of steps as ours (--images // 32) timed.
- Ours: `BIN train --data ../shared/data/fer2013/fer2013.csv.gz --epochs 1
  --limit N --no-augment --quiet --threads T`, whose epoch line ends with the
  wall time of the training steps alone (no data loading, no evaluation), so
  images/s = (N // 32 * 32) / that time.
"""
import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "fer2013" / "fer2013.csv.gz"
BINARY = ROOT / "target" / "release" / "mini-xception"
BATCH = 32
CLASSES = 7
EPOCH_LINE = re.compile(r"^epoch\s+\d+:.*\s([0-9]+(?:\.[0-9]+)?)\s*s\s*$", re.MULTILINE)


# ---------------------------------------------------------------- PyTorch side

def build_model():
    import torch
    import torch.nn.functional as F
    from torch import nn

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)

    class Separable(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
            self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

        def forward(self, x):
            return self.pointwise(self.depthwise(x))

    def max_pool_same(x):
        # TensorFlow 'same' for a 3x3 window with stride 2: the output has
        # ceil(n / 2) cells, and an odd total padding puts the extra row and
        # column at the bottom and right; padded cells never win.
        h, w = x.shape[-2], x.shape[-1]
        ph = max((math.ceil(h / 2) - 1) * 2 + 3 - h, 0)
        pw = max((math.ceil(w / 2) - 1) * 2 + 3 - w, 0)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=float("-inf"))
        return F.max_pool2d(x, 3, 2)

    class Module(nn.Module):
        def __init__(self, cin, f):
            super().__init__()
            self.residual = nn.Conv2d(cin, f, 1, stride=2, bias=False)
            self.residual_bn = bn(f)
            self.sep1 = Separable(cin, f)
            self.bn1 = bn(f)
            self.sep2 = Separable(f, f)
            self.bn2 = bn(f)

        def forward(self, x):
            r = self.residual_bn(self.residual(x))
            y = F.relu(self.bn1(self.sep1(x)))
            y = max_pool_same(self.bn2(self.sep2(y)))
            return y + r

    class MiniXception(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 8, 3, bias=False)
            self.bn1 = bn(8)
            self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
            self.bn2 = bn(8)
            mods, cin = [], 8
            for f in (16, 32, 64, 128):
                mods.append(Module(cin, f))
                cin = f
            self.modules_ = nn.ModuleList(mods)
            self.head = nn.Conv2d(cin, CLASSES, 3, padding=1, bias=True)

        def forward(self, x):
            x = F.relu(self.bn1(self.conv1(x)))
            x = F.relu(self.bn2(self.conv2(x)))
            for m in self.modules_:
                x = m(x)
            return self.head(x).mean((2, 3))

        def l2_weights(self):
            ws = [self.conv1.weight, self.conv2.weight]
            for m in self.modules_:
                ws += [m.sep1.pointwise.weight, m.sep2.pointwise.weight]
            return ws

    class Loss(nn.Module):
        """Forward plus loss in one module, so torch.compile sees all of it."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x, y):
            ce = F.cross_entropy(self.net(x), y)
            l2 = sum(w.pow(2).sum() for w in self.net.l2_weights())
            return ce + 0.01 * l2

    net = MiniXception()
    return net, Loss(net)


class Trainer:
    def __init__(self, compiled, channels_last, images):
        import torch

        torch.manual_seed(0)
        self.torch = torch
        self.net, loss = build_model()
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.net = self.net.to(memory_format=fmt)
        self.net.train()
        try:
            self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7,
                                        fused=True)
            self.fused = True
        except (RuntimeError, TypeError, ValueError):
            self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
            self.fused = False
        self.loss = torch.compile(loss) if compiled else loss
        g = torch.Generator().manual_seed(0)
        steps = max(images // BATCH, 1)
        self.x = torch.rand(steps, BATCH, 1, 64, 64, generator=g) * 2 - 1
        self.x = [b.contiguous(memory_format=fmt) for b in self.x]
        self.y = list(torch.randint(0, CLASSES, (steps, BATCH), generator=g))

    def step(self, i):
        i %= len(self.x)
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(self.x[i], self.y[i])
        loss.backward()
        self.opt.step()
        return loss

    def images_per_s(self, steps, warmup=10):
        for i in range(warmup):
            self.step(i)
        start = time.perf_counter()
        for i in range(steps):
            loss = self.step(i)
        loss.item()
        return steps * BATCH / (time.perf_counter() - start)


def worker(args):
    """One thread count in one process: pick a setting, then answer `run` lines."""
    import torch

    torch.set_num_threads(args.worker)
    torch.set_flush_denormal(True)
    modes = ["eager", "compile"] if args.mode == "auto" else [args.mode]
    formats = ([False, True] if args.memory_format == "auto"
               else [args.memory_format == "channels_last"])
    settings = [(m, cl) for m in modes for cl in formats]
    if args.mode == "auto" and args.memory_format == "auto":
        # Compiling takes long, and compiled contiguous was never the fastest
        # here: probe the compiler with channels_last only.
        settings.remove(("compile", False))
    candidates, notes = [], []
    for mode, cl in settings:
        name = f"{mode}, {'channels_last' if cl else 'contiguous'}"
        try:
            t0 = time.perf_counter()
            tr = Trainer(mode == "compile", cl, args.images)
            tr.step(0)  # compiles, if compiled
            tr.step(1)
        except Exception as e:  # noqa: BLE001 - any failure means: not this one
            notes.append(f"{name}: failed ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
            continue
        notes.append(f"{name}: setup {time.perf_counter() - t0:.1f} s")
        candidates.append([0.0, name, tr])
    if len(candidates) > 1:
        # Probe the candidates in turn, twice, and keep each one's best, so
        # that a burst of load on the machine does not decide alone.
        for _ in range(2):
            for c in candidates:
                c[0] = max(c[0], c[2].images_per_s(args.probe_steps, warmup=3))
        notes += [f"{name}: {speed:.0f} img/s probe" for speed, name, _ in candidates]
    if not candidates:
        print("error no PyTorch setting worked: " + "; ".join(notes), flush=True)
        return
    speed, name, tr = max(candidates, key=lambda c: c[0])
    candidates = None
    print(f"ready {name}, fused Adam {tr.fused} | " + "; ".join(notes), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        print(f"{tr.images_per_s(args.images // BATCH):.3f}", flush=True)


class Worker:
    def __init__(self, threads, args):
        cmd = [sys.executable, __file__, "--worker", str(threads), "--images", str(args.images),
               "--mode", args.mode, "--memory-format", args.memory_format,
               "--probe-steps", str(args.probe_steps)]
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline().strip()
        if not line.startswith("ready "):
            self.p.kill()
            sys.exit(f"PyTorch worker ({threads} threads) failed: {line or 'no output'}")
        self.setting, _, self.notes = line[len("ready "):].partition(" | ")

    def run(self):
        self.p.stdin.write("run\n")
        self.p.stdin.flush()
        return float(self.p.stdout.readline())

    def close(self):
        self.p.stdin.close()
        self.p.wait()


# ---------------------------------------------------------------- our side

def ours(binary, threads, images):
    with tempfile.TemporaryDirectory() as out:
        cmd = [str(binary), "train", "--data", str(DATA), "--out", out, "--epochs", "1",
               "--limit", str(images), "--quiet", "--threads", str(threads), "--no-augment"]
        text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = EPOCH_LINE.search(text)
    if not m:
        sys.exit(f"no epoch line with a time in the output of {' '.join(cmd)}:\n{text}")
    return (images // BATCH * BATCH) / float(m.group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=3200,
                        help="images per measurement (ours: --limit; PyTorch: images // 32 steps)")
    parser.add_argument("--binary", type=Path, default=BINARY)
    parser.add_argument("--mode", choices=["auto", "eager", "compile"], default="auto")
    parser.add_argument("--memory-format", choices=["auto", "contiguous", "channels_last"],
                        default="auto")
    parser.add_argument("--probe-steps", type=int, default=30,
                        help="timed steps per candidate setting when choosing one")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    binary = args.binary if args.binary.is_absolute() else ROOT / args.binary
    if not binary.exists():
        sys.exit(f"{binary} is missing: run `cargo build --release` first")
    if not DATA.exists():
        sys.exit(f"{DATA} is missing")
    if args.images < BATCH:
        sys.exit(f"--images must be at least {BATCH}")

    import torch

    load = os.getloadavg()[0]
    threads = (1, 2)
    workers = {}
    for t in threads:
        print(f"PyTorch, {t} thread(s): choosing a setting...", file=sys.stderr, flush=True)
        workers[t] = Worker(t, args)
        print(f"  {workers[t].setting} [{workers[t].notes}]", file=sys.stderr, flush=True)
    theirs = {t: [] for t in threads}
    mine = {t: [] for t in threads}
    for r in range(args.rounds):
        for t in threads:
            # Alternate the two so that both see the same machine load.
            theirs[t].append(workers[t].run())
            mine[t].append(ours(binary, t, args.images))
            print(f"round {r + 1}, {t} thread(s): PyTorch {theirs[t][-1]:.1f} img/s, "
                  f"ours {mine[t][-1]:.1f} img/s", file=sys.stderr, flush=True)
    for w in workers.values():
        w.close()

    print(f"training images/s, emotion model 64x64x1, batch {BATCH}, {args.images // BATCH} steps "
          f"per measurement, {args.rounds} alternating round(s), medians")
    print(f"load average (1 min) before: {load:.2f}, after: {os.getloadavg()[0]:.2f} "
          f"(anything else running on the cores skews these, 2 threads most)")
    print(f"PyTorch {torch.__version__}: " +
          "; ".join(f"{t} thread(s): {workers[t].setting}" for t in threads))
    print("| threads | PyTorch images/s | ours images/s | ratio (ours / PyTorch) |")
    print("|---:|---:|---:|---:|")
    for t in threads:
        a, b = statistics.median(theirs[t]), statistics.median(mine[t])
        print(f"| {t} | {a:.1f} | {b:.1f} | {b / a:.2f}x |")


if __name__ == "__main__":
    main()
