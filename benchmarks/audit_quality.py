"""How the audit's ranking depends on the accuracy of its fold models, keeping the error structure
of a real model.

    python benchmarks/audit.py --work W --backbone tiny --size 96 --epochs 40 --skip-training
    python benchmarks/audit_quality.py --work W [--factors 1 0.7 0.5 0.35 0.25]

``benchmarks/audit.py`` leaves in ``W`` the corrupted set and, per fold, the out-of-fold
predictions ``P``, TTA spread and views' pose spread that ``augkit audit`` scored. This script
replaces every prediction by ``T + a (P - T)``, ``T`` the row's original (clean) ytf68 label and
``a`` a factor, and scales the spread and the pose spread by ``a`` too: the same model's errors
(their pose part, their per-landmark and per-image structure, their tails), ``a`` times as large.
``a = 1`` is the measured model (it reproduces the audit's own table); ``a = 0.5`` a model whose
every error is half as large. The planted labels stay as they were; each row is scored with
:class:`augkit.audit.LabelAuditor` as ``augkit audit`` scores it (fitted on the whole set, the
default threshold), and ranked as in ``benchmarks/audit.py``.

What it cannot say: how a better model's errors would differ in kind (a real model trained longer
or on a GPU errs less on some faces than on others); it is a scaling of one measured model, not a
measurement of another.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from audit import KINDS, RANKING_HEADER, plant, ranking_cells, ranking_metrics
from harness import YTF68  # noqa: E402


def load(work: Path, data: Path, seed: int, fraction: float):
    """(truth labels, corrupted labels, predictions, spread, pose spread, planted kind) of every
    audited image, in the order of the folds."""
    import augkit as ak
    from augkit.data import read_dataset
    from augkit.audit.folds import _fold_data, _rows

    with tempfile.TemporaryDirectory() as tmp:   # the same rows as the audit's (its own copy is left alone)
        truth_kind = plant(data / "train", Path(tmp) / "corrupted", fraction, seed)
    plan = json.loads((work / "audit" / "folds.json").read_text())
    table = read_dataset(str(work / "corrupted"))
    clean = read_dataset(str(data / "train"))
    where = {os.path.basename(f): i for i, f in enumerate(clean.files)}
    parts: list[list] = [[], [], [], [], [], []]
    for _, idx, paths in _fold_data(str(work / "audit"), np.asarray(plan["fold"]), plan["folds"]):
        names = [os.path.basename(table.files[i]) for i in idx]
        parts[0].append(np.asarray(clean.points[[where[n] for n in names]], np.float64))
        parts[1].append(np.asarray(table.points[idx], np.float64))
        for part, path in zip(parts[2:5], paths):
            part.append(_rows(path, slice(None)))
        parts[5].append(np.array([truth_kind.get(n, "ok") for n in names]))
    out = [np.concatenate(p) for p in parts]
    ok = np.isfinite(out[2]).all(axis=(1, 2))
    return [o[ok] for o in out], ak.IBUG68


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="the --work folder of a finished benchmarks/audit.py run")
    ap.add_argument("--data", default=str(YTF68))
    ap.add_argument("--seed", type=int, default=0, help="the seed that audit.py planted the errors with")
    ap.add_argument("--fraction", type=float, default=0.05)
    ap.add_argument("--factors", type=float, nargs="+", default=[1.0, 0.7, 0.5, 0.35, 0.25])
    a = ap.parse_args(argv)
    from augkit.audit import DEFAULT_THRESHOLD, LabelAuditor

    (truth, lab, pred, spread, pose, kind), scheme = load(Path(a.work), Path(a.data), a.seed, a.fraction)
    i, j = scheme.norm
    iod = np.linalg.norm(truth[:, i] - truth[:, j], axis=1)
    clean = kind == "ok"
    print(f"{len(lab)} images of {a.work}, {int((~clean).sum())} planted errors; the model's errors scaled by a\n")
    print(RANKING_HEADER.replace("| ranking |", "| a | clean NME (median) |").replace("|---|", "|---|---:|", 1))
    for f in a.factors:
        p = truth + f * (pred - truth)
        nme = np.median(np.linalg.norm(p[clean] - truth[clean], axis=-1).mean(axis=1) / iod[clean])
        auditor = LabelAuditor(scheme.perm, scheme.norm).fit(lab, p, f * spread, f * pose)
        s = auditor.score(lab, p, f * spread, f * pose, DEFAULT_THRESHOLD)
        named = np.array(s.kind)
        print(f"| {f:g} | {nme:.3f} | " + ranking_cells(ranking_metrics(s.score, kind, named, a.fraction)) + " |")
        mse = ranking_metrics(s.mse, kind, None, a.fraction)
        print(f"| {f:g}, plain MSE | | " + ranking_cells(mse) + " |")
    print(f"\n(kinds: {', '.join(KINDS)}; clean NME: mean point error / inter-ocular distance of the clean rows)")


if __name__ == "__main__":
    main()
