"""A refactor's check: the same small training runs at an earlier commit and in the working tree,
and their logs compared row by row (every metric but the timings). A change that only moves code
must leave them identical; the script prints one row per recipe and exits 1 when any differs.

    python benchmarks/same_training.py --base 3f2cb08
    python benchmarks/same_training.py --base HEAD~3 --recipe "--head simcc" --epochs 4

The earlier commit is checked out with ``git worktree`` into a temporary folder and imported from
there (``PYTHONPATH``), so nothing is installed. Commits from before ``train/`` and ``tta/`` moved
under ``augkit/`` (issue 24) are assembled into that layout. CPU, one thread, the demo faces: the
runs are deterministic, so "identical" means bit for bit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("", "--ema 0.9 --freeze-epochs 1", "--head rle")
IGNORED = ("epoch_s", "elapsed_s", "train_img_s")   # timings differ between any two runs


def _old_tree(base: str, where: Path) -> Path:
    """An importable copy of augkit at ``base`` (``where/pkg/augkit``)."""
    wt = where / "worktree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(wt), base], check=True)
    try:
        pkg = where / "pkg"
        shutil.copytree(wt / "augkit", pkg / "augkit")
        for sub in ("train", "tta"):          # the layout before issue 24: top-level folders
            if (wt / sub).is_dir() and not (pkg / "augkit" / sub).exists():
                shutil.copytree(wt / sub, pkg / "augkit" / sub)
        return pkg
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(wt)], check=False)


def _train_module(pythonpath: str | None) -> str:
    """The module that runs ``augkit train`` in that tree (it moved in issue 24)."""
    code = ("import importlib.util as u\n"
            "try:\n    found = u.find_spec('augkit.cli.train') is not None\n"
            "except ModuleNotFoundError:   # augkit.cli was a module, not a package\n    found = False\n"
            "print('augkit.cli.train' if found else 'augkit.train.cli')")
    env = dict(os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {}))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                          cwd=tempfile.gettempdir()).stdout.strip()


def _run(pythonpath: str | None, args: list, out: Path) -> list:
    env = dict(os.environ, OMP_NUM_THREADS="1", **({"PYTHONPATH": pythonpath} if pythonpath else {}))
    cmd = [sys.executable, "-m", _train_module(pythonpath), *args, "--out", str(out)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    return [{k: v for k, v in json.loads(line).items() if k not in IGNORED}
            for line in (out / "log.jsonl").read_text().splitlines()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="the earlier commit (any git revision)")
    ap.add_argument("--recipe", action="append", default=None,
                    help="extra `augkit train` options of one run; repeat (default: plain, --ema with "
                         "--freeze-epochs, --head rle)")
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()
    common = ["--backbone", "tiny", "--size", "32", "--batch-size", "16", "--workers", "0", "--threads", "1",
              "--quiet", "--demo-train", "240", "--demo-val", "60", "--epochs", str(a.epochs), "--seed", "1"]
    failed = False
    with tempfile.TemporaryDirectory(prefix="augkit-same-") as tmp:
        where = Path(tmp)
        old = str(_old_tree(a.base, where))
        print(f"{'recipe':34s} {'epochs':>6s}  {'identical':9s}  last val MSE at {a.base} / now")
        for i, recipe in enumerate(a.recipe or RECIPES):
            args = common + recipe.split()
            before = _run(old, args, where / f"old{i}")
            after = _run(None, args, where / f"new{i}")
            same = before == after
            failed |= not same
            print(f"{recipe or '(plain)':34s} {len(after):6d}  {str(same):9s}  "
                  f"{before[-1].get('mse', float('nan')):.6f} / {after[-1].get('mse', float('nan')):.6f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
