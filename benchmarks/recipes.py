"""The training recipes (docs/benchmarks/accuracy.md), side by side at one fixed CPU budget per run: `augkit train`
on ytf68/train (validation split by person), every best checkpoint evaluated on ytf68/test (people
disjoint from train), two or more seeds per row, the spread between seeds shown.

    python benchmarks/recipes.py            # resnet18 at 64 px, the first 1000 images, 4 epochs per run, seeds 0 and 1
    python benchmarks/recipes.py --epochs 5 --rows default ema

The budget is the work, not the clock: every run trains the same epochs over the same images
(2 to 4 minutes each on a 2-core machine), so a busy machine slows the runs but does not
change the results; ``--time-budget`` is only a safety cap. Rows: the default recipe;
``+ --ema DECAY``; ``--lr auto`` (its range test comes on top of the training minutes shown);
``+ --freeze-epochs 1`` started from ``--weights`` of the same seed's default run (the
write-ups' way, so it has that run's training too); a timm model of resnet18's size
(``--backbone timm/resnet18``, the [timm] extra). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from harness import ROOT, YTF68, mean_spread  # noqa: E402
ROWS = ("default", "ema", "lr-auto", "freeze", "timm")


def _label(row: str, a) -> str:
    return {"default": f"default ({a.backbone}, {a.size}px, lr {a.lr or 'default'})", "ema": f"+ --ema {a.ema}",
            "lr-auto": "--lr auto", "freeze": "+ --freeze-epochs 1 from the default run's --weights",
            "timm": f"--backbone timm/{a.backbone}"}[row]


def _args(row: str, a, seed: int, out: Path) -> list:
    args = []
    if row == "ema":
        args += ["--ema", str(a.ema)]
    if row == "lr-auto":
        args += ["--lr", "auto", "--lr-find-steps", str(a.lr_find_steps)]
    elif a.lr:
        args += ["--lr", str(a.lr)]
    if row == "freeze":
        args += ["--freeze-epochs", "1", "--weights", str(out / f"default-s{seed}" / "best.pt")]
    args += ["--backbone", f"timm/{a.backbone}" if row == "timm" else a.backbone]
    return args


def _evaluate(ck_path: str, images, truth):
    from augkit import metrics as M
    from augkit.models.checkpoint import load_model
    lm = load_model(ck_path)
    pred = lm.predict(images, batch_size=64)
    return M.summary(pred, truth.points, lm.scheme)


def _baseline(ck_path: str, images, truth) -> dict:
    """The mean shape of a run's training images, mapped into every test image (the floor to beat)."""
    from augkit import geometry as G
    from augkit import metrics as M
    from augkit.models.checkpoint import load_model, read_checkpoint
    from augkit.train.data import preprocess_matrix
    lm = load_model(ck_path)
    mean_px = np.asarray(read_checkpoint(ck_path)["mean_shape"]) * np.array(lm.input_size[::-1]) - 0.5
    pred = np.stack([G.apply_points(G.invert(preprocess_matrix(lm.preprocess, (im.shape[1], im.shape[0]))[0]),
                                    mean_px) for im in images])
    return M.summary(pred, truth.points, lm.scheme)


def per_seed(done) -> str:
    return " / ".join(f"{x['nme']:.4f}" for x in done)


def _fmt(values, digits=4) -> str:
    return mean_spread(values, digits)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(YTF68), help="ytf68 root (train/ and test/)")
    ap.add_argument("--epochs", type=int, default=4, help="epochs of every run (the fixed budget)")
    ap.add_argument("--cap-min", type=float, default=8.0, help="--time-budget of every run: a safety cap only")
    ap.add_argument("--lr-find-steps", type=int, default=60, help="steps of the --lr auto row's range test")
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16, help="small batches: more steps in a CPU budget")
    ap.add_argument("--lr", type=float, default=None, help="peak LR of the rows without --lr auto [train's default]")
    ap.add_argument("--ema", type=float, default=0.99, help="decay of the --ema row (a short run: a short average)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--limit", type=int, default=1000, help="the first N images of ytf68/train (0: all 3376), so "
                    "that several epochs, and the whole LR schedule, fit in a CPU budget")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    ap.add_argument("--out", default=str(ROOT / "runs" / "recipes"))
    ap.add_argument("--reuse", action="store_true", help="runs already finished in --out are evaluated, not retrained")
    a = ap.parse_args(argv)
    if len(a.seeds) < 2:
        sys.exit("--seeds: give at least two seeds (the table shows the spread between them)")
    if "freeze" in a.rows and "default" not in a.rows:
        sys.exit("--rows freeze starts from the default rows' checkpoints: include default")

    import torch
    from augkit.data import read_dataset

    train_dir, test_dir = os.path.join(a.data, "train"), os.path.join(a.data, "test")
    n_train = min(len(read_dataset(train_dir)), a.limit or 10**9)
    epochs = a.epochs
    out = Path(a.out)
    common = ["--data", train_dir, "--val-group", "person", "--val-fraction", "0.1", "--size", str(a.size),
              "--epochs", str(epochs), "--batch-size", str(a.batch_size), "--workers", str(a.workers),
              "--time-budget", str(a.cap_min), "--quiet"] + (["--limit", str(a.limit)] if a.limit else [])

    from augkit.io import read_image
    truth = read_dataset(os.path.join(test_dir, "landmarks.csv"), format="competition",
                         images=os.path.join(test_dir, "images"))
    images = [read_image(f) for f in truth.files]

    results = {}
    for row in a.rows:
        for seed in a.seeds:
            run_dir = out / f"{row}-s{seed}"
            cmd = [sys.executable, "-m", "augkit.cli.train", *common, "--seed", str(seed), "--out", str(run_dir),
                   *_args(row, a, seed, out)]
            if not (a.reuse and (run_dir / "summary.json").is_file()):
                print("$ augkit train " + " ".join(shlex.quote(c) for c in cmd[3:]), flush=True)
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode:
                    print(r.stdout[-2000:] + r.stderr[-3000:])
                    results.setdefault(row, []).append(None)
                    continue
            summary = json.loads((run_dir / "summary.json").read_text())
            minutes = summary["elapsed_s"] / 60  # training and validation (a range test comes on top)
            m = _evaluate(str(run_dir / "best.pt"), images, truth)
            extra = ""
            if row == "lr-auto":
                extra = f"{json.loads((run_dir / 'lr_find.json').read_text())['suggested_lr']:.2g}"
            results.setdefault(row, []).append({"nme": m["nme"], "mse": m["mse"], "fr": m["fr"], "minutes": minutes,
                                                "epochs": summary["epochs"], "extra": extra})
            print(f"  {row} seed {seed}: test NME {m['nme']:.4f}  MSE {m['mse']:.2f}  {minutes:.1f} min  "
                  f"{summary['epochs']} epochs{'  ' + summary['stopped'] if summary.get('stopped') else ''}"
                  f"{'  peak LR ' + extra if extra else ''}", flush=True)

    print()
    print(f"ytf68: the first {n_train} train images (10% held out by person for validation), evaluated on the "
          f"{len(images)} test images; {a.backbone}-size models at {a.size}px from scratch, {epochs} epochs per run, "
          f"batch {a.batch_size}, on {os.cpu_count()} CPU cores, torch {torch.__version__}; "
          f"seeds {', '.join(map(str, a.seeds))}; mean ± half the spread between seeds")
    print()
    print("| recipe | test NME | test MSE (px²) | NME per seed | training minutes per run | note |")
    print("|---|---:|---:|---|---:|---|")
    first = next((out / f"{row}-s{a.seeds[0]}" / "best.pt" for row in a.rows
                  if (out / f"{row}-s{a.seeds[0]}" / "best.pt").is_file()), None)
    if first is not None:
        b = _baseline(str(first), images, truth)
        print(f"| mean-shape baseline | {b['nme']:.4f} | {b['mse']:.1f} | | | the training images' mean shape |")
    for row in a.rows:
        done = [x for x in results.get(row, []) if x is not None]
        if len(done) < len(results.get(row, [])):
            print(f"| {_label(row, a)} | failed | | | | {len(results[row]) - len(done)} run(s) failed |")
            continue
        note = {"lr-auto": "suggested peak LR " + ", ".join(x["extra"] for x in done) + " (+ the range test's time)",
                "freeze": "+ the default run's training", "ema": "the average is validated and saved"}.get(row, "")
        print(f"| {_label(row, a)} | {_fmt([x['nme'] for x in done])} | {_fmt([x['mse'] for x in done], 1)} | "
              f"{per_seed(done)} | {np.mean([x['minutes'] for x in done]):.1f} | {note} |")


if __name__ == "__main__":
    main()
