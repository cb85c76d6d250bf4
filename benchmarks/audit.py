"""Plant label errors in ytf68/train, run ``augkit audit``, and measure what it finds.

    python benchmarks/audit.py                 # resnet18, 64 px, 3 epochs: about 20 minutes on 2 cores
    python benchmarks/audit.py --backbone tiny --size 96 --epochs 40 --work W   # better fold models: about 40 minutes
    python benchmarks/audit.py --epochs 2 --size 48 --backbone tiny    # a quick look
    python benchmarks/audit_quality.py --work W                        # then: the same errors, scaled down
    python benchmarks/audit.py --reuse         # the last run's fold models, scored again; then the three trainings
    python benchmarks/audit.py --skip-training --head rle --work W2   # fold models with σ: the score uses their σ
    python benchmarks/audit.py --skip-training --head rle --work W2 --reuse --no-sigma   # the same folds without σ

About 5% of the rows get one of four errors (in equal numbers): ``swap`` (left/right indices swapped
by the ibug68 flip pairs), ``shift`` (the whole label moved by 10-20% of the face's size), ``mismatch``
(another image's label, at the same place relative to the image), ``points`` (3-8 points moved by
15-30% of the inter-ocular distance). Printed: average precision of the ranking, recall among the top
5%, recall per kind and how often the kind is named right, for augkit's score and for the plain
ranking by out-of-fold MSE side by side; then the test MSE of ``augkit train`` on the clean set, on
the corrupted set, and on the corrupted set with ``--exclude audit.csv``. Written under ``--work``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from harness import YTF68, run_logged  # noqa: E402
KINDS = ("swap", "shift", "mismatch", "points")


def plant(src: Path, dst: Path, fraction: float, seed: int) -> dict:
    """Copy src's labels to dst (images linked) with ``fraction`` of the rows corrupted; returns
    {file name: kind}."""
    import augkit as ak
    from augkit.io import image_size
    rng = np.random.default_rng(seed)
    with open(src / "landmarks.csv", encoding="utf-8") as f:
        header, *rows = f.read().splitlines()
    names = [r.split("\t", 1)[0] for r in rows]
    pts = np.array([np.asarray(r.split("\t")[1:], np.float64).reshape(68, 2) for r in rows])
    n = len(rows)
    chosen = rng.choice(n, int(round(fraction * n)), replace=False)
    truth = {}
    perm = ak.IBUG68.perm
    for j, i in enumerate(chosen):
        kind = KINDS[j % len(KINDS)]
        p = pts[i].copy()
        iod = np.linalg.norm(p[36] - p[45])
        if kind == "swap":
            p = p[perm]
        elif kind == "shift":
            size = np.ptp(p, axis=0).max()
            a = rng.uniform(0, 2 * np.pi)
            p = p + rng.uniform(0.10, 0.20) * size * np.array([np.cos(a), np.sin(a)])
        elif kind == "mismatch":
            donor = int(rng.integers(n))
            while donor == i or names[donor].rsplit("_", 2)[0] == names[i].rsplit("_", 2)[0]:
                donor = int(rng.integers(n))
            w0, h0 = image_size(str(src / "images" / names[donor]))
            w1, h1 = image_size(str(src / "images" / names[i]))
            p = pts[donor] * np.array([w1 / w0, h1 / h0])
        else:
            idx = rng.choice(68, int(rng.integers(3, 9)), replace=False)
            a = rng.uniform(0, 2 * np.pi, len(idx))
            p[idx] += rng.uniform(0.15, 0.30, len(idx))[:, None] * iod * np.stack([np.cos(a), np.sin(a)], 1)
        rows[i] = names[i] + "\t" + "\t".join(f"{v:.2f}" for v in p.reshape(-1))
        truth[names[i]] = kind
    dst.mkdir(parents=True, exist_ok=True)
    if not (dst / "images").exists():
        os.symlink(src / "images", dst / "images")
    (dst / "landmarks.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return truth


def average_precision(score: np.ndarray, positive: np.ndarray) -> float:
    order = np.argsort(-score, kind="stable")
    hit = positive[order]
    precision = np.cumsum(hit) / np.arange(1, len(hit) + 1)
    return float((precision * hit).sum() / max(hit.sum(), 1))


RANKING_HEADER = ("| ranking | average precision | recall in top 5% | " + " | ".join(f"recall {k}" for k in KINDS)
                  + " | kind named right (top 5%) |\n|---|---:|---:|" + "---:|" * len(KINDS) + "---:|")


def ranking_metrics(score: np.ndarray, kind: np.ndarray, named: np.ndarray | None, fraction: float) -> dict:
    """How well ``score`` ranks the planted rows (``kind`` != "ok", one of KINDS): average precision,
    recall among the top ``fraction`` of rows, that recall per planted kind, and (given the
    diagnoses ``named``) the share of planted rows in the top whose kind is named right (a planted
    shift named ``scale`` counts as right: both are a similarity of the whole label)."""
    planted = kind != "ok"
    top = int(np.ceil(fraction * len(score)))
    in_top = np.zeros(len(score), bool)
    in_top[np.argsort(-score, kind="stable")[:top]] = True
    out = {"ap": average_precision(score, planted), "recall": float(np.mean(in_top[planted])),
           "per_kind": {k: float(np.mean(in_top[kind == k])) if (kind == k).any() else float("nan") for k in KINDS},
           "named_right": None}
    found = np.flatnonzero(in_top & planted)
    if named is not None and len(found):
        out["named_right"] = float(np.mean([named[i] == kind[i] or (kind[i] == "shift" and named[i] == "scale")
                                            for i in found]))
    return out


def ranking_cells(m: dict) -> str:
    """The cells of one row of RANKING_HEADER's table."""
    right = "(no diagnosis)" if m["named_right"] is None else f"{m['named_right']:.2f}"
    return (f"{m['ap']:.3f} | {m['recall']:.2f} | " + " | ".join(f"{m['per_kind'][k]:.2f}" for k in KINDS)
            + f" | {right}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(YTF68))
    ap.add_argument("--work", default="/tmp/augkit_audit")
    ap.add_argument("--fraction", type=float, default=0.05)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preprocess", default=None, choices=["crop", "letterbox"],
                    help="passed to the audit's fold trainings (default: augkit train's)")
    ap.add_argument("--skip-training", action="store_true", help="the audit only, no clean/corrupted/excluded runs")
    ap.add_argument("--tta", default="full", help="the audit's --tta")
    ap.add_argument("--head", default="regression",
                    help="the fold models' --head (rle, integral, simcc: the score uses their own σ)")
    ap.add_argument("--no-sigma", action="store_true",
                    help="augkit audit --no-sigma: score without the fold models' σ (with --reuse: the same folds)")
    ap.add_argument("--random-control", action="store_true",
                    help="a fourth training: the corrupted set less as many random rows as the audit flags")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the fold models and out-of-fold predictions of an audit already in --work (same seed "
                         "and options): only the scoring runs again (augkit audit --resume)")
    a = ap.parse_args(argv)
    work = Path(a.work)
    truth = plant(Path(a.data) / "train", work / "corrupted", a.fraction, a.seed)
    cli = [sys.executable, "-m", "augkit.cli"]
    train_opts = ["--backbone", a.backbone, "--size", str(a.size), "--epochs", str(a.epochs), "--val-group", "person",
                  "--batch-size", "32", "--workers", "1", "--seed", str(a.seed), "--quiet", "--head", a.head]
    if a.preprocess:
        train_opts += ["--preprocess", a.preprocess]
    out = work / "audit"
    audit = cli + ["audit", "--data", str(work / "corrupted"), "--out", str(out), "--folds", str(a.folds),
                   "--tta", a.tta, *train_opts] + (["--no-sigma"] if a.no_sigma else [])
    if a.reuse and (out / "folds.json").is_file():
        # the folds' models and out-of-fold arrays are kept; the scoring runs again with this code
        print(f"reusing the fold models in {out} (the same planted errors: seed {a.seed}); scoring again")
        dt = run_logged(audit + ["--resume"], work / "audit_rescore.log")
        print((work / "audit_rescore.log").read_text().strip().splitlines()[-2])
        dt = float("nan")
    else:
        subprocess.run(["rm", "-rf", str(out)], check=True)
        dt = run_logged(audit, work / "audit.log")
        print((work / "audit.log").read_text().strip().splitlines()[-2])
    with open(out / "audit.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    names = [r["file_name"] for r in rows]
    kind = np.array([truth.get(n, "ok") for n in names])
    planted = kind != "ok"
    named = np.array([r["kind"] for r in rows])
    top = int(np.ceil(a.fraction * len(rows)))
    print(f"\naugkit audit --folds {a.folds} ({a.backbone} at {a.size} px, head {a.head}{' (σ not used)' if a.no_sigma else ''}, {a.epochs} epochs per fold; "
          f"{'fold models reused' if dt != dt else f'{dt / 60:.1f} min'}): "
          f"{len(rows)} images, {planted.sum()} planted errors ({a.fraction:.0%}); top 5% = {top} images\n")
    print(RANKING_HEADER)
    for label, score in (("augkit score", np.array([float(r["score"]) for r in rows])),
                         ("plain out-of-fold MSE", np.array([float(r["mse"]) for r in rows]))):
        m = ranking_metrics(score, kind, named if label == "augkit score" else None, a.fraction)
        print(f"| {label} | " + ranking_cells(m) + " |")
    flagged = named != "ok"
    print(f"\nsuspect at the default threshold: {flagged.sum()} images, {np.sum(flagged & planted)} of them planted; "
          "named: " + ", ".join(f"{k} {np.sum(named == k)}" for k in sorted(set(named)) if k != "ok"))
    confusion = {k: dict(zip(*np.unique(named[kind == k], return_counts=True))) for k in KINDS}
    print("planted kind -> named (all rows): " + json.dumps({k: {str(x): int(c) for x, c in v.items()}
                                                             for k, v in confusion.items()}))
    if a.skip_training:
        return
    runs = [("clean", "clean", Path(a.data) / "train", []),
            ("corrupted", "corrupted", work / "corrupted", []),
            ("corrupted + --exclude audit.csv", "corrupted_excl", work / "corrupted", ["--exclude", str(out / "audit.csv")])]
    if a.random_control:
        # as many rows as the audit flags, drawn at random from audit.csv: what any exclusion alone does
        # (it renumbers the images, so every augmentation draw and batch of the run changes)
        pick = np.random.default_rng(7).choice(len(rows), int((named != "ok").sum()), replace=False)
        control = work / "random_exclude.csv"
        control.write_text("file_name\n" + "".join(rows[i]["file_name"] + "\n" for i in pick), encoding="utf-8")
        runs.append((f"corrupted + --exclude of {len(pick)} random rows", "random_excl", work / "corrupted",
                     ["--exclude", str(control)]))
    results = []
    for label, name, data, extra in runs:
        run = work / "runs" / name
        subprocess.run(["rm", "-rf", str(run)], check=True)
        run_logged(cli + ["train", "--data", str(data), "--out", str(run), *train_opts, *extra], work / f"{run.name}.log")
        js = work / f"{run.name}.json"
        run_logged(cli + ["evaluate", "--run", str(run), "--data", str(Path(a.data) / "test"), "--tta", "none", "--png", "",
                    "--json", str(js)], work / f"{run.name}.eval.log")
        res = json.loads(js.read_text())["results"][0]
        results.append((label, res["mse"], res["nme"]))
        print(f"  {label}: test MSE {res['mse']:.2f}", flush=True)
    print(f"\naugkit train ({a.backbone} at {a.size} px, {a.epochs} epochs, seed {a.seed}) evaluated on ytf68/test:\n")
    print("| training labels | test MSE | test NME |")
    print("|---|---:|---:|")
    for label, mse, nme in results:
        print(f"| {label} | {mse:.2f} | {nme:.4f} |")


if __name__ == "__main__":
    main()
