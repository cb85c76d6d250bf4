"""The TTA table (docs/benchmarks/accuracy.md): MSE/NME on ytf68/test for no TTA, `flip`, `full` and weights
fitted on a validation split of train, plus the uncertainty-error correlation.

    python benchmarks/tta_report.py [--work runs/tta_report] [--backbone tiny] [--size 96]
                                    [--epochs 40] [--time-budget 5] [--val-fraction 0.15]

1. Split ytf68/train BY PERSON into fit-train and validation folders (symlinked images); test is
   never used for anything but the final numbers.
2. ``augkit train`` on fit-train (skipped when WORK/run/best.pt exists).
3. ``augkit tta fit`` on validation with the ``full`` views -> WORK/fitted.yaml.
4. ``augkit evaluate`` on ytf68/test with none, flip, full and fitted.yaml (the union of views is
   predicted once), then the markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from harness import YTF68 as YTF  # noqa: E402

from augkit.tta import load_spec  # noqa: E402

PERSON = re.compile(r"^(.+?)_\d+_[^_]+$")


def split_by_person(work: Path, val_fraction: float, seed: int = 0):
    """Write WORK/split/{fit,val}/{images/, landmarks.csv} from ytf68/train, disjoint by person."""
    lines = (YTF / "train" / "landmarks.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:]
    names = [r.split("\t", 1)[0] for r in rows]
    people = sorted({PERSON.match(n).group(1) if PERSON.match(n) else n for n in names})
    rng = np.random.default_rng(seed)
    val_people = set(rng.choice(people, int(round(val_fraction * len(people))), replace=False).tolist())
    out = {}
    for part in ("fit", "val"):
        folder = work / "split" / part
        (folder / "images").mkdir(parents=True, exist_ok=True)
        keep = [r for r, n in zip(rows, names)
                if ((PERSON.match(n).group(1) if PERSON.match(n) else n) in val_people) == (part == "val")]
        for r in keep:
            n = r.split("\t", 1)[0]
            link = folder / "images" / n
            if not link.exists():
                os.symlink(YTF / "train" / "images" / n, link)
        (folder / "landmarks.csv").write_text("\n".join([header] + keep) + "\n")
        out[part] = (folder, len(keep))
    return out, len(people), len(val_people)


def sh(cmd, log=None):
    print("$ " + " ".join(str(c) for c in cmd), flush=True)
    t = time.perf_counter()
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    text = res.stdout + (res.stderr if res.returncode else "")
    print(text.rstrip(), flush=True)
    if res.returncode:
        sys.exit(f"command failed ({res.returncode})")
    print(f"  ({time.perf_counter() - t:.0f} s)", flush=True)
    return res.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="runs/tta_report")
    ap.add_argument("--backbone", default="tiny")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--time-budget", type=float, default=5.0, help="training minutes at most")
    ap.add_argument("--val-fraction", type=float, default=0.15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-batch", type=int, default=96)
    ap.add_argument("--limit", type=int, default=None, help="smoke test: this many validation/test images")
    args = ap.parse_args()
    if not (YTF / "train" / "landmarks.csv").is_file():
        sys.exit(f"ytf68 not found at {YTF}")
    work = Path(args.work).resolve()
    t0 = time.perf_counter()
    parts, n_people, n_val = split_by_person(work, args.val_fraction)
    print(f"split ytf68/train by person: {n_people - n_val} people / {parts['fit'][1]} images to train, "
          f"{n_val} people / {parts['val'][1]} images to fit the TTA weights; ytf68/test only for the table")
    augkit = [sys.executable, "-m", "augkit.cli"]
    ck = work / "run" / "best.pt"
    if not ck.is_file():
        sh(augkit + ["train", "--data", parts["fit"][0], "--backbone", args.backbone, "--size", args.size,
                     "--epochs", args.epochs, "--time-budget", args.time_budget, "--out", work / "run",
                     "--workers", 0, "--threads", args.threads, "--val-group", "person", "--quiet"])
    else:
        print(f"reusing {ck}")
    spec = work / "fitted.yaml"
    sh(augkit + ["tta", "fit", "--checkpoint", ck, "--data", parts["val"][0], "--tta", "full", "--out", spec,
                 "--max-batch", args.max_batch] + (["--limit", args.limit] if args.limit else []))
    metrics_json = work / "test_metrics.json"
    sh(augkit + ["evaluate", "--checkpoint", ck, "--data", YTF / "test", "--tta", "flip", "--tta", "full",
                 "--tta", spec, "--json", metrics_json, "--png", work / "worst.png", "--max-batch", args.max_batch]
       + (["--limit", args.limit] if args.limit else []))
    rows = json.loads(metrics_json.read_text())["results"]
    chosen = (load_spec(spec).fit or {}).get("merge", "?")     # what `tta fit` chose by cross-validated MSE
    label = {"none": "no TTA", "flip": "`flip` (2 views)", "full": "`full` (24 views)",
             str(spec): f"`full`, `tta fit` on validation (chose: {chosen})"}
    base = rows[0]["mse"]
    print(f"\nytf68/test, {args.backbone} at {args.size}px trained by `augkit train` on {parts['fit'][1]} "
          f"images; MSE in original pixels (the competition metric), NME by inter-ocular distance\n")
    print("| TTA | members | MSE | vs no TTA | NME | Spearman(spread, error) per point | per image |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        rp = "n/a" if r["rho_point"] is None else f"{r['rho_point']:.3f}"
        ri = "n/a" if r["rho_image"] is None else f"{r['rho_image']:.3f}"
        print(f"| {label.get(r['setting'], r['setting'])} | {r['members']} | {r['mse']:.2f} | "
              f"{100 * (r['mse'] - base) / base:+.1f}% | {r['nme']:.4f} | {rp} | {ri} |")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
