"""The landmark heads side by side at one fixed CPU budget: accuracy with and without TTA, the
calibration of σ, seconds per epoch and activation memory per image.

    python benchmarks/heads.py                       # ytf68 and the dense 971-point ytf68, every head, seeds 0 and 1
                                                     # (rle twice: --rle-dist laplace and gaussian)
    python benchmarks/heads.py --reuse               # evaluate the finished runs again, train only what is missing
    python benchmarks/heads.py --memory-only         # the activation-memory table alone (seconds)

Every run is ``augkit train`` on the first ``--limit`` images of ytf68/train (validation split by
person), resnet18 at 64 px from scratch, ``--epochs`` epochs (the budget is the work, not the
clock); then ``augkit tta fit --run DIR --tta full`` on the run's own validation images (it
chooses the merge); then every best checkpoint is evaluated on ytf68/test (people disjoint from
train) with no TTA, ``flip``, ``full`` and the fitted spec. The dense set is
``benchmarks/dense971.py``'s ``smooth`` variant (971 points in the competition's parts, the true
flip pairs), built from the same images. Printed: MSE in original pixels over all points and over
the 30 test points per image (the competition's metric), NME (inter-ocular), failure rate at NME
0.08, per-part MSE on the dense set, and for the heads with σ its coverage at 1σ and 2σ (an
isotropic Gaussian promises 39% and 86%) and the rank correlation of per-image error and σ.

Activation memory per image: the bytes of every tensor autograd saves for the backward pass of
one training step (forward + the head's loss), counted once per storage, the weights left out,
divided by the batch;
ResNet-50 at K = 971 and 128 / 224 px, on the CPU (the same graph a GPU would save).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, YTF68, mean_spread, print_table  # noqa: E402

HEADS = ("regression", "rle-laplace", "rle-gaussian", "integral", "simcc")   # the rows
SETTINGS = ("none", "flip", "full", "fitted")
HEAD_SIGMA = {"regression": False, "rle-laplace": True, "rle-gaussian": True, "integral": True, "simcc": True}
# a row that is a head with explicit settings: its `augkit train` options (rle's default is gaussian)
HEAD_ARGS = {"rle-laplace": ["--head", "rle", "--rle-dist", "laplace"],
             "rle-gaussian": ["--head", "rle", "--rle-dist", "gaussian"]}
MEMORY_HEADS = ("regression", "rle", "integral", "simcc")   # the registry's heads (memory does not depend on rle's density)


def activation_bytes(head: str, backbone: str = "resnet50", k: int = 971, size: int = 128, batch: int = 2) -> float:
    """Bytes autograd keeps for backward per image in one training step (forward + loss)."""
    import torch

    from augkit.models.heads import find_head
    from augkit.models.network import build_model
    torch.manual_seed(0)
    model = build_model(backbone, k, head=head, input_size=(size, size), mean_shape=np.full((k, 2), 0.5)).train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}   # weights are not activations
    seen, total = set(params), [0]

    def pack(t):
        s = t.untyped_storage()
        key = s.data_ptr()
        if key not in seen:
            seen.add(key)
            total[0] += s.nbytes()
        return t

    x = torch.randn(batch, 3, size, size)
    target = torch.rand(batch, k, 2)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = find_head(model).loss(model(x), target, None)
    del loss
    return total[0] / batch


def memory_table() -> None:
    rows = []
    for head in MEMORY_HEADS:
        row = [head]
        for size in (128, 224):
            row.append(activation_bytes(head, size=size))
        rows.append(row)
    base = {128: rows[0][1], 224: rows[0][2]}
    print("Activation memory per image, one training step (forward + loss), ResNet-50, K = 971:")
    print()
    print_table(["head", "128 px (MB)", "× regression", "224 px (MB)", "× regression"],
                [[r[0], f"{r[1] / 2**20:.1f}", f"{r[1] / base[128]:.2f}", f"{r[2] / 2**20:.1f}",
                  f"{r[2] / base[224]:.2f}"] for r in rows])
    print()


def _run(cmd, log: Path) -> bool:
    with open(log, "w") as f:
        r = subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, check=False)
    if r.returncode:
        print(f"  failed ({r.returncode}): {' '.join(map(str, cmd))}\n" + log.read_text()[-1500:], flush=True)
    return r.returncode == 0


def _test_points(path: Path, names) -> list:
    """The 30 test indices of every test image, in ``names`` order."""
    import ast
    rows = {}
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            name, idx = line.rstrip("\n").split("\t")
            rows[name] = ast.literal_eval(idx)
    return [rows[os.path.basename(n)] for n in names]


def evaluate(run_dir: Path, test_dir: Path, parts: dict | None) -> dict:
    """Every setting's metrics of a run's best checkpoint on ``test_dir`` (one predictor per setting)."""
    from augkit import metrics as M
    from augkit.calibration import coverage, rank_correlation
    from augkit.models.checkpoint import load_model
    from augkit.data import read_dataset
    from augkit.tta import TTAPredictor, load_spec
    model = load_model(run_dir / "best.pt")
    truth = read_dataset(test_dir)
    files = list(truth.files)
    sel = _test_points(test_dir / "test_points.csv", files)
    rows = np.repeat(np.arange(len(files)), [len(s) for s in sel])
    cols = np.concatenate([np.asarray(s) for s in sel])
    out = {}
    for setting in SETTINGS:
        spec = load_spec(run_dir / "tta.yaml") if setting == "fitted" else setting
        res = TTAPredictor(model, spec, max_batch=128).predict(files, workers=0)
        pred, t = res.points, truth.points
        m = M.summary(pred, t, model.scheme)
        d2 = ((pred - t) ** 2)
        m["mse30"] = float(np.nanmean(d2[rows, cols]))
        if parts:
            m["parts"] = {p: float(np.nanmean(d2[:, a:b + 1])) for p, (a, b) in parts.items()}
        sigma = getattr(res, "sigma", None)
        if sigma is not None:
            c = coverage(pred, t, sigma)                          # at k = 1 and 2 (augkit.calibration.COVERAGE_K)
            m["cov1"], m["cov2"] = float(c[0]), float(c[1])
            m["rank"] = rank_correlation(pred, t, sigma)[0]      # per image: RMS error ~ RMS σ
        if setting == "fitted":
            m["merge"] = (spec.fit or {}).get("merge", spec.merge)
        out[setting] = m
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(YTF68), help="ytf68 root (train/ and test/)")
    ap.add_argument("--sets", nargs="+", default=["ytf68", "dense971"], choices=["ytf68", "dense971"])
    ap.add_argument("--heads", nargs="+", default=list(HEADS), choices=HEADS)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--limit", type=int, default=1000, help="the first N images of ytf68/train")
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--cap-min", type=float, default=10.0, help="--time-budget of every run: a safety cap only")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", default=str(ROOT / "runs" / "heads"))
    ap.add_argument("--reuse", action="store_true", help="runs finished in --out are evaluated, not retrained")
    ap.add_argument("--train-only", action="store_true", help="train (and tta fit) the runs, evaluate nothing")
    ap.add_argument("--refit", action="store_true", help="run tta fit again on reused runs")
    ap.add_argument("--memory-only", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    a = ap.parse_args(argv)
    if not a.no_memory or a.memory_only:
        memory_table()
    if a.memory_only:
        return
    if len(a.seeds) < 2:
        sys.exit("--seeds: give at least two seeds (the tables show the spread between them)")
    import torch
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    sets = {}
    for name in a.sets:
        if name == "ytf68":
            sets[name] = (Path(a.data), None, None)
        else:
            import dense971
            root = out / "dense971-data" / "smooth"
            if not (root / "true.yaml").is_file():
                dense971.build(out / "dense971-data", "smooth", Path(a.data))
            sets[name] = (root, str(root / "true.yaml"), dense971.PARTS)
    results: dict = {}
    for set_name, (root, scheme, parts) in sets.items():
        for head in a.heads:
            for seed in a.seeds:
                run_dir = out / f"{set_name}-{head}-s{seed}"
                if not (a.reuse and (run_dir / "summary.json").is_file()):
                    cmd = [sys.executable, "-m", "augkit.cli", "train", "--data", root / "train", "--val-group",
                           "person", "--limit", a.limit, "--backbone", a.backbone, "--size", a.size, "--epochs",
                           a.epochs, "--batch-size", a.batch_size, "--workers", a.workers, "--time-budget", a.cap_min,
                           *HEAD_ARGS.get(head, ["--head", head]), "--seed", seed, "--out", run_dir, "--quiet"]
                    if scheme:
                        cmd += ["--scheme", scheme]
                    if run_dir.exists():
                        import shutil
                        shutil.rmtree(run_dir)
                    print(f"training {run_dir.name}", flush=True)
                    if not _run(cmd, out / f"{run_dir.name}.train.log"):
                        continue
                if a.train_only:
                    continue
                if a.refit or not (run_dir / "tta.yaml").is_file():
                    fit = [sys.executable, "-m", "augkit.cli", "tta", "fit", "--run", run_dir, "--tta", "full",
                           "--workers", "0"] + (["--calibrate"] if HEAD_SIGMA[head] else [])
                    if not _run(fit, out / f"{run_dir.name}.fit.log"):
                        continue
                cache = run_dir / "heads_eval.json"
                if a.reuse and cache.is_file() and cache.stat().st_mtime > (run_dir / "tta.yaml").stat().st_mtime:
                    ev = json.loads(cache.read_text())
                else:
                    ev = evaluate(run_dir, root / "test", parts)
                    cache.write_text(json.dumps(ev, indent=1))
                summary = json.loads((run_dir / "summary.json").read_text())
                ev["epoch_s"] = summary["elapsed_s"] / max(1, summary["epochs"])
                results.setdefault((set_name, head), []).append(ev)
                print(f"  {run_dir.name}: " + "  ".join(f"{s} MSE {ev[s]['mse']:.2f}" for s in SETTINGS), flush=True)
    if a.train_only:
        return
    print()
    print(f"ytf68 train: the first {a.limit} images (10% held out by person), test: ytf68/test; {a.backbone} at "
          f"{a.size} px from scratch, {a.epochs} epochs, batch {a.batch_size}, {os.cpu_count()} CPU cores, torch "
          f"{torch.__version__}; seeds {', '.join(map(str, a.seeds))}: mean ± half the spread between seeds")
    for set_name in sets:
        print()
        print(f"### {set_name}")
        print()
        rows = []
        for head in a.heads:
            runs = results.get((set_name, head), [])
            if not runs:
                continue
            for s in SETTINGS:
                label = s if s != "fitted" else "tta fit: " + "/".join(sorted({r[s].get("merge", "?") for r in runs}))
                rows.append([f"{head}", label, mean_spread([r[s]["mse"] for r in runs]),
                             mean_spread([r[s]["mse30"] for r in runs]), mean_spread([r[s]["nme"] for r in runs], 4),
                             mean_spread([r[s]["fr"] for r in runs], 3),
                             mean_spread([r[s].get("cov1") for r in runs], 3),
                             mean_spread([r[s].get("cov2") for r in runs], 3),
                             mean_spread([r[s].get("rank") for r in runs], 2),
                             f"{np.mean([r['epoch_s'] for r in runs]):.0f}" if s == "none" else ""])
        print_table(["head", "TTA", "MSE (px²)", "MSE, 30 test points", "NME", "FR@0.08", "within 1σ (0.39)",
                     "within 2σ (0.86)", "rank corr. error~σ", "s / epoch"], rows)
        if sets[set_name][2]:
            print()
            names = list(sets[set_name][2])
            rows = []
            for head in a.heads:
                runs = results.get((set_name, head), [])
                if runs:
                    rows.append([head] + [mean_spread([r["fitted"]["parts"][p] for r in runs], 1) for p in names])
            print("Per-part MSE (px²), the tta fit setting:")
            print()
            print_table(["head"] + names, rows)


if __name__ == "__main__":
    main()
