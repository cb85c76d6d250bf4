"""Does the default face pipeline gain from issue 27's steps? Train -> evaluate, two seeds a row.

    python benchmarks/augment_default.py              # ytf68 (4 rows) and the dense 971-point set (2 rows)
    python benchmarks/augment_default.py --reuse      # finished runs in --work are evaluated, not retrained

Rows (each an ``--aug`` pipeline YAML written under ``--work``):

- ``default``: ``augkit.presets.face_augment_steps()``, as ``augkit train`` uses it;
- ``+ perspective``: the default with ``Perspective(yaw=±0.25, pitch=±0.15, jitter=0.03, p=0.4)``
  after its ``Affine`` (the turned heads of the test photos);
- ``+ caption``: the default with ``Caption(p=0.25)`` at its end;
- ``+ all new``: both, and a ``OneOf`` of ``Downscale``, ``Sharpen``, ``ColorJitter`` and
  ``CLAHE`` (p 0.3), ``CoarseDropout`` (p 0.2) and ``RandomPatch`` from the training images (p 0.2).

The dense set (``benchmarks/dense971.py``, smooth variant, true pairs) runs ``default`` and
``+ all new``. Each run is also evaluated on two altered copies of its test set (written under
``--work``, a fixed seed per image): ``test + caption`` (a ``Caption`` over the landmarks' box of
every test photo: what the competition's test set has and ytf68's has not) and ``test +
perspective`` (every test photo through ``Perspective(yaw=±0.25, pitch=±0.15)``, the labels moved
exactly with it: turned heads). Every run: the same epochs over the same images (``--limit``), resnet18 at 64 px from
scratch, batch 16, validation split by person; evaluated with ``augkit evaluate --tta none`` on the
test people. The budget is the work, not the clock. A default changes only when a row's gain
exceeds the spread between seeds (``mean ± half the range``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dense971  # noqa: E402
from harness import YTF68, evaluate_json, mean_spread, print_table, train_and_test  # noqa: E402

ROWS = ("default", "+ perspective", "+ caption", "+ all new")
DENSE_ROWS = ("default", "+ all new")


def pipelines(patch_folder: str) -> dict:
    """The rows' pipelines (applied after preprocessing, in the model frame)."""
    import augkit as ak
    from augkit.presets import face_augment_steps
    base = face_augment_steps()
    persp = ak.Perspective(yaw=(-0.25, 0.25), pitch=(-0.15, 0.15), jitter=0.03, p=0.4)
    caption = ak.Caption(p=0.25)
    at = next(i for i, s in enumerate(base) if isinstance(s, ak.Affine)) + 1
    new_photo = [ak.OneOf([ak.Downscale(scale=(0.3, 0.7)), ak.Sharpen(amount=(0.3, 1.0)), ak.ColorJitter(),
                           ak.CLAHE(clip_limit=(1.0, 3.0))], p=0.3),
                 ak.CoarseDropout(n=(1, 4), height=(0.05, 0.12), width=(0.05, 0.12), fill="random", p=0.2),
                 ak.RandomPatch(source=patch_folder, n=1, area=(0.02, 0.08), p=0.2)]
    return {"default": base,
            "+ perspective": base[:at] + [persp] + base[at:],
            "+ caption": base + [caption],
            "+ all new": base[:at] + [persp] + base[at:] + new_photo + [caption]}


def altered_test(test_dir: Path, out: Path, kind: str) -> Path:
    """A copy of a competition-layout test set with every image through one step (fixed seed per
    image), labels moved with it; written once under ``out``."""
    import cv2

    import augkit as ak
    from augkit.data import read_dataset
    from augkit.io import read_image
    if (out / "landmarks.csv").is_file():
        return out
    step = {"caption": lambda: ak.Caption(position="landmarks", height=(0.04, 0.08)),
            "perspective": lambda: ak.Perspective(yaw=(-0.25, 0.25), pitch=(-0.15, 0.15))}[kind]()
    pipe = ak.Compose([step], points_unordered=True)
    table = read_dataset(test_dir / "landmarks.csv", format="competition", images=str(test_dir / "images"))
    (out / "images").mkdir(parents=True, exist_ok=True)
    names, pts = [], []
    for i, (path, p) in enumerate(zip(table.files, table.points)):
        r = pipe(read_image(path), p, rng=np.random.default_rng(i))
        name = os.path.basename(path)
        cv2.imwrite(str(out / "images" / name), cv2.cvtColor(r.image, cv2.COLOR_RGB2BGR))
        names.append(name)
        pts.append(r.points)
    dense971._write_labels(out / "landmarks.csv", names, np.stack(pts))
    return out


ALTERED = ("caption", "perspective")


def _slug(row: str) -> str:
    return row.replace("+ ", "plus_").replace(" ", "_")


def run_rows(a, name: str, data: Path, rows, extra: list) -> dict:
    import augkit as ak
    work = Path(a.work) / name
    work.mkdir(parents=True, exist_ok=True)
    pipes = pipelines(str(data / "train" / "images"))
    results: dict = {}
    for row in rows:
        yaml = work / f"{_slug(row)}.yaml"
        ak.save(ak.Compose(pipes[row]), yaml)
        for seed in a.seeds:
            stem = f"{_slug(row)}_s{seed}"
            args = ["--data", data / "train", "--val-group", "person", "--val-fraction", "0.1", "--backbone", a.backbone,
                    "--size", a.size, "--epochs", a.epochs, "--batch-size", "16", "--workers", a.workers,
                    "--time-budget", a.cap_min, "--limit", a.limit, "--seed", seed, "--quiet", "--aug", yaml, *extra]
            results.setdefault(row, []).append(
                train_and_test(args, work / "runs" / stem, data / "test", work / stem, a.reuse, f"{name} {row} seed {seed}"))
    # every run again on the altered test sets
    for kind in ALTERED:
        test = altered_test(data / "test", work / f"test_{kind}", kind)
        for row in rows:
            for seed, res in zip(a.seeds, results[row]):
                stem = f"{_slug(row)}_s{seed}"
                res[f"nme_{kind}"] = evaluate_json(work / "runs" / stem, test, work / f"{stem}.{kind}.eval.json",
                                                   work / f"{stem}.{kind}.eval.log", a.reuse)["nme"]
                print(f"  {name} {row} seed {seed}: test + {kind} NME {res[f'nme_{kind}']:.4f}", flush=True)
    return results


def table(name: str, results: dict) -> None:
    base = results.get("default")
    rows = []
    for row, runs in results.items():
        gain = ""
        if base and row != "default":
            d = [r["nme"] - b["nme"] for r, b in zip(runs, base)]
            gain = f"{np.mean(d):+.4f} (per seed {' / '.join(f'{x:+.4f}' for x in d)})"
        rows.append([row, mean_spread([r["mse"] for r in runs], 2), mean_spread([r["nme"] for r in runs], 4),
                     " / ".join(f"{r['nme']:.4f}" for r in runs), gain,
                     *[mean_spread([r[f"nme_{k}"] for r in runs], 4) for k in ALTERED]])
    print(f"\n{name}:")
    print_table(["pipeline", "test MSE", "test NME", "NME per seed", "NME vs default (same seed)",
                 *[f"test + {k} NME" for k in ALTERED]], rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(YTF68), help="ytf68 root (train/ and test/)")
    ap.add_argument("--work", default="/tmp/augkit_augment_default", help="runs and pipeline files (outside the repo)")
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--limit", type=int, default=1000, help="the first N training images of each set")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--cap-min", type=float, default=10.0, help="--time-budget of a run: a safety cap only")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--sets", nargs="+", default=["ytf68", "dense"], choices=["ytf68", "dense"])
    ap.add_argument("--reuse", action="store_true")
    a = ap.parse_args(argv)
    if len(a.seeds) < 2:
        sys.exit("--seeds: give at least two (the table shows the spread between them)")
    import torch
    all_results = {}
    if "ytf68" in a.sets:
        all_results["ytf68 (68 points)"] = run_rows(a, "ytf68", Path(a.data), ROWS, [])
    if "dense" in a.sets:
        root = dense971.build(Path(a.work) / "dense_set", "smooth", Path(a.data))
        all_results["dense 971-point set (smooth variant, true pairs)"] = run_rows(
            a, "dense", root, DENSE_ROWS, ["--scheme", str(root / "true.yaml")])
    print(f"\n{a.backbone} at {a.size} px from scratch, {a.epochs} epochs over the first {a.limit} training images, "
          f"batch 16, seeds {a.seeds}, {os.cpu_count()} CPU cores, torch {torch.__version__}; test = the test "
          "people, --tta none; mean ± half the range over seeds")
    for name, res in all_results.items():
        table(name, res)


if __name__ == "__main__":
    main()
