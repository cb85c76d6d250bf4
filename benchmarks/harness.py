"""What the benchmarks share: where the data is, how a command runs with its log, how a table and a
mean ± spread print. Imported by the scripts beside it (``python benchmarks/X.py`` puts this folder on
``sys.path``); it imports nothing of augkit.

``AUGKIT_YTF68`` points the benchmarks (and the tests) at another copy of the 68-point set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["ROOT", "YTF68", "run_logged", "evaluate_json", "train_and_test", "print_table", "mean_spread", "albu", "albumentations_name"]

ROOT = Path(__file__).resolve().parents[1]
YTF68 = Path(os.environ.get("AUGKIT_YTF68") or ROOT.parent / "shared" / "data" / "ytf68")


def run_logged(cmd, log) -> float:
    """Run ``cmd`` with stdout and stderr into ``log``; seconds taken. Exits with the log's tail on failure."""
    t = time.perf_counter()
    with open(log, "w") as f:
        r = subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, check=False)
    if r.returncode:
        sys.exit(f"failed ({r.returncode}): {' '.join(map(str, cmd))}\n" + Path(log).read_text()[-3000:])
    return time.perf_counter() - t



def evaluate_json(run, data, js, log, reuse: bool = False) -> dict:
    """``augkit evaluate --tta none`` of the run folder ``run`` on ``data``, its metrics into ``js``
    (an existing ``js`` is read back when ``reuse``); the first result (``mse``, ``nme``, ``parts``)."""
    if not (reuse and Path(js).is_file()):
        run_logged([sys.executable, "-m", "augkit.cli", "evaluate", "--run", run, "--data", data, "--tta", "none",
                    "--png", "", "--json", js], log)
    return json.loads(Path(js).read_text())["results"][0]


def train_and_test(train_args, out, test, stem, reuse: bool, label: str) -> dict:
    """``augkit train *train_args --out out``, then :func:`evaluate_json` on ``test``; the logs and
    the metrics go to ``stem.train.log``, ``stem.eval.log`` and ``stem.eval.json``. With ``reuse``,
    a run that has its ``best.pt`` and its metrics is read back instead (sessions are cut off: a
    long benchmark resumes). Prints one line under ``label``; returns the test result."""
    out, js = Path(out), Path(f"{stem}.eval.json")
    if reuse and js.is_file() and (out / "best.pt").is_file():
        print(f"  {label}: reused {out}", flush=True)
        return json.loads(js.read_text())["results"][0]
    shutil.rmtree(out, ignore_errors=True)
    dt = run_logged([sys.executable, "-m", "augkit.cli", "train", *train_args, "--out", out], f"{stem}.train.log")
    res = evaluate_json(out, test, js, f"{stem}.eval.log")
    print(f"  {label}: train {dt:.0f}s, test MSE {res['mse']:.2f}, NME {res['nme']:.4f}", flush=True)
    return res


def print_table(header, rows) -> None:
    """A Markdown table: the first column left-aligned, the others right-aligned."""
    print("| " + " | ".join(str(h) for h in header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")


def mean_spread(values, digits: int = 2) -> str:
    """``mean ± half the range`` of a few runs (seeds), or the one value; ``—`` for none."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return "—"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {(max(values) - min(values)) / 2:.{digits}f}"


# albumentations 2.0 names -> AlbumentationsX names (2.x renamed them; both import as `albumentations`)
_ALBUX_NAMES = {"sigma_limit": "sigma_range", "blur_limit": "blur_range", "brightness_limit": "brightness_range",
                "contrast_limit": "contrast_range", "format": "coord_format"}


def albu(cls, **kwargs):
    """``cls(**kwargs)`` written with albumentations 2.0's argument names, renamed to
    AlbumentationsX's where ``cls`` takes those instead."""
    import inspect
    params = inspect.signature(cls.__init__).parameters
    return cls(**{(_ALBUX_NAMES[k] if k not in params and _ALBUX_NAMES.get(k) in params else k): v
                  for k, v in kwargs.items()})


def albumentations_name() -> str:
    """"albumentations 2.0.8" or "AlbumentationsX 2.5.1": which distribution provides the import."""
    import importlib.metadata as md

    import albumentations as A
    try:
        md.version("albumentationsx")
        return f"AlbumentationsX {A.__version__}"
    except md.PackageNotFoundError:
        return f"albumentations {A.__version__}"
