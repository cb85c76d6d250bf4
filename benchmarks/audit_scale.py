"""Competition scale for the scoring stage of ``augkit audit``: time and peak memory of fitting
the :class:`augkit.audit.LabelAuditor` and writing ``audit.csv`` from out-of-fold arrays of N
images x 971 points, each size in its own process.

    python benchmarks/audit_scale.py [--images 20000 80000] [--folds 2] [--keep DIR]

The folds' training and TTA prediction are ``augkit train`` and the streamed predictor, measured
by ``benchmarks/scale.py``; what is new in the audit is the scoring: the set-wide statistics are
fitted on a random sample of at most ``augkit.audit.folds.FIT_SAMPLE`` images, then every image is scored
in chunks of ``augkit.audit.folds.SCORE_CHUNK`` straight from the memory-mapped float32 fold arrays
(``oof_points.npy``, ``oof_spread.npy``, ``oof_pose_spread.npy``), as ``augkit audit`` writes them.

What it builds (in a temporary folder): per size, fold folders with those three arrays, written
in chunks. Labels: ytf68 faces turned into the competition's dense layout by
``benchmarks/dense971.py`` (971 points in its parts, with its left/right pairs, so the ``swap``
test runs at full size); predictions: the labels plus independent noise per point (4% of the inter-ocular distance) plus
a whole-face translation drawn from each image's own pose spread (1-3%, as the views would say);
5% of the rows get a planted
whole-label shift of 30% of the inter-ocular distance. The labels go in as float32, as the reader
holds them.

What it prints (markdown): per size, seconds, peak RSS of the child (``ru_maxrss``), the float32
labels array (what the reader holds anyway) and the growth of peak RSS per image between the two
sizes beside the labels' 7.6 KB per image; the planted shifts' recall among the suspects as a
sanity check (it is a synthetic set: not an accuracy figure).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import dense971
from harness import YTF68, print_table  # noqa: E402
from scale import _kb, _mb, run

K = dense971.N_POINTS
CHUNK = 4096        # images built at a time


def build(folder: Path, n: int, folds: int, seed: int = 0) -> None:
    """labels.npy (n, 971, 2) float32, fold.npy, planted.npy and fold<f>/oof_*.npy, in chunks."""
    from numpy.lib.format import open_memmap

    from augkit.data import read_dataset
    rng = np.random.default_rng(seed)
    base = dense971.dense_points(np.asarray(read_dataset(YTF68 / "train").points, np.float64), "smooth")
    folder.mkdir(parents=True, exist_ok=True)
    labels = open_memmap(folder / "labels.npy", mode="w+", dtype=np.float32, shape=(n, K, 2))
    fold_of = np.arange(n) % folds
    planted = rng.random(n) < 0.05
    np.save(folder / "fold.npy", fold_of)
    np.save(folder / "planted.npy", planted)
    outs = []
    for f in range(folds):
        m = int((fold_of == f).sum())
        d = folder / f"fold{f}"
        d.mkdir(exist_ok=True)
        outs.append([open_memmap(d / name, mode="w+", dtype=np.float32, shape=shape)
                     for name, shape in (("oof_points.npy", (m, K, 2)), ("oof_spread.npy", (m, K)),
                                         ("oof_pose_spread.npy", (m, 3)))])
    norm = dense971.true_scheme("smooth")["norm"]
    for a in range(0, n, CHUNK):
        ids = np.arange(a, min(n, a + CHUNK))
        lab = base[rng.integers(0, len(base), len(ids))].copy()
        iod = np.linalg.norm(lab[:, norm[0]] - lab[:, norm[1]], axis=1)[:, None, None]
        # the model's uncertainty about where the face is (the views' pose spread: translation sd /
        # face size, log-scale sd, rotation sd) and its error drawn from it, as from a calibrated model
        pose_sd = rng.uniform(0.01, 0.03, (len(ids), 3))
        shift = rng.normal(0, 1, (len(ids), 2)) * pose_sd[:, :1] / np.sqrt(2)
        pred = lab + rng.normal(0, 0.04, lab.shape) * iod + shift[:, None, :] * iod
        sh = planted[ids]
        ang = rng.uniform(0, 2 * np.pi, int(sh.sum()))
        lab[sh] += 0.3 * iod[sh] * np.stack([np.cos(ang), np.sin(ang)], 1)[:, None, :]
        labels[ids] = lab
        for f in range(folds):
            sel = fold_of[ids] == f
            pos = ids[sel] // folds                     # position within the fold (fold = i % folds)
            pts, spr, pose = outs[f]
            pts[pos] = pred[sel]
            spr[pos] = (0.02 + 0.02 * rng.random((int(sel.sum()), K))) * iod[sel, :, 0]
            pose[pos] = pose_sd[sel]
    labels.flush()
    for arrays in outs:
        for arr in arrays:
            arr.flush()


def child(folder: Path, folds: int) -> None:
    """In its own process: score the set as ``augkit audit`` does and print one JSON line."""
    from types import SimpleNamespace

    from augkit.schemes import get_scheme
    from augkit.audit.folds import _score_all

    labels = np.load(folder / "labels.npy")          # float32 in memory, as the reader holds it
    fold_of = np.load(folder / "fold.npy")
    planted = np.load(folder / "planted.npy")
    n = len(labels)
    names = [f"img_{i:07d}.jpg" for i in range(n)]
    table = SimpleNamespace(files=names, points=labels, lines=np.arange(2, n + 2))   # row numbers as the reader gives
    scheme = get_scheme(dense971.true_scheme("smooth"))
    t0 = time.perf_counter()
    counts, rows, _ = _score_all(str(folder), fold_of, folds, table, scheme, 4.0)
    dt = time.perf_counter() - t0
    with open(folder / "audit.csv", encoding="utf-8", newline="") as f:
        suspect = {r["file_name"] for r in csv.DictReader(f) if r["suspect"] == "true"}
    found = sum(names[i] in suspect for i in np.flatnonzero(planted))
    status = dict(ln.split(":", 1) for ln in Path("/proc/self/status").read_text().splitlines() if ":" in ln)
    held = {k: int(status.get(k, "0 kB").split()[0]) * 1024 for k in ("RssAnon", "RssFile")}
    print("RESULT " + json.dumps({"n": n, "seconds": dt, "rows": rows, "labels_bytes": labels.nbytes, **held,
                                  "planted": int(planted.sum()), "found": found, "suspect": len(suspect),
                                  "counts": counts}))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, nargs=2, default=[20_000, 80_000])
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--keep", default=None, help="build in this folder and keep it")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        child(Path(a.child), a.folds)
        return
    from augkit.audit.folds import FIT_SAMPLE, SCORE_CHUNK
    here = Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(here.parent), str(here),
                                                                  os.environ.get("PYTHONPATH", "")) if p))
    tmp = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="augkit_audit_scale_"))
    results = []
    try:
        for n in sorted(a.images):
            folder = tmp / f"set_{n}"
            t0 = time.perf_counter()
            build(folder, n, a.folds)
            print(f"built {n:,} images x {K} points in {time.perf_counter() - t0:.0f}s", flush=True)
            secs, peak, out, late = run([sys.executable, __file__, "--child", str(folder), "--folds", str(a.folds)],
                                        env=env)
            res = json.loads(next(ln for ln in out.splitlines() if ln.startswith("RESULT "))[7:])
            res.update(wall=secs, peak=peak, late=late)
            results.append(res)
            print(f"  scored in {res['seconds']:.0f}s, peak RSS {_mb(peak)}", flush=True)
            if not a.keep:
                shutil.rmtree(folder)
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n`augkit audit` scoring, {K} points, {a.folds} folds (fit on at most {FIT_SAMPLE:,} images, "
          f"scored {SCORE_CHUNK:,} at a time):\n")
    print_table(["images", "scoring s", "peak RSS", "float32 labels", "peak RSS / labels", "planted shifts flagged",
                 "suspects"],
                [[f"{r['n']:,}", f"{r['seconds']:.0f}", _mb(r["peak"]), _mb(r["labels_bytes"]),
                  f"{r['peak'] / r['labels_bytes']:.2f}", f"{r['found']}/{r['planted']}", r["suspect"]] for r in results])
    lo, hi = results[0], results[-1]
    dn = hi["n"] - lo["n"]
    grow = (hi["peak"] - lo["peak"]) / dn
    per_label = (hi["labels_bytes"] - lo["labels_bytes"]) / dn
    print(f"\npeak RSS grows by {_kb(grow)} per image between {lo['n']:,} and {hi['n']:,} "
          f"(the float32 labels alone: {_kb(per_label)} per image)")
    if lo["n"] < FIT_SAMPLE:
        print(f"(below {FIT_SAMPLE:,} images the fit's sample grows with N: the projection holds only when both "
              "sizes are above it, as with the defaults)")
    per_s = (hi["seconds"] - lo["seconds"]) / dn
    print(f"projected to the competition's 393,930 training rows: about "
          f"{(hi['seconds'] + per_s * (393_930 - hi['n'])) / 60:.0f} min of scoring, peak RSS about "
          f"{_mb(hi['peak'] + grow * (393_930 - hi['n']))}")


if __name__ == "__main__":
    main()
