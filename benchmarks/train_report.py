"""The training report (docs/benchmarks/accuracy.md): `augkit train` on ytf68/train (validation split by person) within a
fixed CPU budget, then the best checkpoint evaluated on ytf68/test (people disjoint from train):
MSE (the competition's metric, original pixels) and NME (inter-ocular) against the mean-shape
baseline, plus the competition-style MSE over each image's 30 test points.

    python benchmarks/train_report.py                       # resnet18 at 128 px, 8 minutes of training
    python benchmarks/train_report.py --budget-min 3 --backbone tiny --size 64

The epoch count is chosen from a measured training-step rate so the LR schedule completes inside
the budget; ``--time-budget`` caps it anyway.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from harness import ROOT, YTF68  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(YTF68), help="ytf68 root (train/ and test/)")
    ap.add_argument("--budget-min", type=float, default=8.0, help="minutes of training")
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=None, help="default: what the measured rate fits in the budget")
    ap.add_argument("--out", default=str(ROOT / "runs" / "train_report"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    import torch
    from augkit.data import read_dataset, read_test_points

    train_dir, test_dir = os.path.join(a.data, "train"), os.path.join(a.data, "test")
    n_train = len(read_dataset(train_dir))
    if a.epochs is None:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from loader_throughput import step_rate
        rate = step_rate(a.backbone, a.size, a.batch_size, 3) * 0.85  # the loader worker takes a share of the CPU
        per_epoch = 0.9 * n_train / rate + 0.1 * n_train / rate * 1.5  # train + validation (~10%)
        epochs = max(1, int(a.budget_min * 60 * 0.95 / per_epoch))
        print(f"measured ~{rate:.0f} img/s for {a.backbone} at {a.size}px: {epochs} epochs fit in {a.budget_min} min")
    else:
        epochs = a.epochs
    cmd = [sys.executable, "-m", "augkit.cli.train", "--data", train_dir, "--val-group", "person",
           "--val-fraction", "0.1", "--backbone", a.backbone, "--size", str(a.size), "--epochs", str(epochs),
           "--batch-size", str(a.batch_size), "--workers", str(a.workers), "--time-budget", str(a.budget_min),
           "--seed", str(a.seed), "--out", a.out, "--quiet"]
    shown = "augkit train " + " ".join(shlex.quote(c) for c in cmd[3:])
    print(f"$ {shown}", flush=True)
    t0 = time.time()
    r = subprocess.run(cmd)
    if r.returncode:
        sys.exit(f"training failed ({r.returncode})")
    train_s = time.time() - t0

    from augkit import geometry as G
    from augkit import metrics as M
    from augkit.io import read_image
    from augkit.models.checkpoint import load_model, read_checkpoint
    from augkit.train.data import preprocess_matrix

    ck = read_checkpoint(os.path.join(a.out, "best.pt"))
    lm = load_model(os.path.join(a.out, "best.pt"))
    truth = read_dataset(os.path.join(test_dir, "landmarks.csv"), format="competition",
                         images=os.path.join(test_dir, "images"))
    t1 = time.time()
    images = [read_image(f) for f in truth.files]
    pred = lm.predict(images, batch_size=64)
    eval_s = time.time() - t1
    mean_px = np.asarray(ck["mean_shape"]) * np.array(lm.input_size[::-1]) - 0.5
    base = np.stack([G.apply_points(G.invert(preprocess_matrix(lm.preprocess, (im.shape[1], im.shape[0]))[0]), mean_px)
                     for im in images])
    tp = dict(read_test_points(test_dir))
    names = [os.path.basename(f) for f in truth.files]
    sel = np.zeros(truth.points.shape[:2], bool)
    for i, n in enumerate(names):
        sel[i, tp[n]] = True

    def row(p):
        s = M.summary(p, truth.points, lm.scheme)
        s["mse30"] = float(((p - truth.points) ** 2)[sel].mean())
        return s

    m, b = row(pred), row(base)
    hist = ck["history"]
    best = ck["best"]
    summary = json.loads(Path(a.out, "summary.json").read_text())
    print()
    print(f"ytf68: trained on {summary['train_images']} train images ({summary['val_images']} held out by person "
          f"for validation), evaluated on the {len(names)} test images (people disjoint from train)")
    print(f"{a.backbone} at {a.size}px from scratch on {os.cpu_count()} CPU cores, torch {torch.__version__}: "
          f"{summary['epochs']} epochs in {train_s / 60:.1f} min (best epoch {best['epoch']} by validation NME)"
          + (f"; {summary['stopped']}" if summary.get("stopped") else ""))
    print()
    print("| ytf68/test (846 images) | MSE, all 68 points (px²) | MSE, the 30 test points (px²) | NME (inter-ocular) | failure rate (NME > 0.08) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| mean-shape baseline | {b['mse']:.2f} | {b['mse30']:.2f} | {b['nme']:.4f} | {b['fr']:.1%} |")
    print(f"| `augkit train` ({a.backbone}, {a.size}px) | {m['mse']:.2f} | {m['mse30']:.2f} | {m['nme']:.4f} | {m['fr']:.1%} |")
    print()
    print(f"validation (by person) at the best epoch: MSE {hist[best['epoch'] - 1]['mse']:.2f} vs mean shape "
          f"{hist[best['epoch'] - 1]['base_mse']:.2f}, NME {hist[best['epoch'] - 1]['nme']:.4f} vs "
          f"{hist[best['epoch'] - 1]['base_nme']:.4f}; test inference {len(names) / eval_s:.0f} img/s "
          f"(decode + preprocess + model + invert)")
    print(f"command: {shown}")


if __name__ == "__main__":
    main()
