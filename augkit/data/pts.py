"""The 300-W ``.pts`` format: every ``name.pts`` beside its image ``name.<ext>`` (searched
recursively), with or without the ``version / n_points / { }`` wrapper; 1-based coordinates made
0-based. A ``.pts`` file that cannot be used is skipped (or, strict, an error) naming it."""

from __future__ import annotations

import os
import re

import numpy as np

from augkit.io import IMAGE_EXTENSIONS

from .parser import is_number
from .table import DatasetError, LandmarkTable, Skips

__all__ = ["is_pts", "read_pts"]


def is_pts(path: str) -> bool:
    """A ``.pts`` file, or a folder with ``.pts`` files in it or in a folder below it."""
    if os.path.isfile(path):
        return path.lower().endswith(".pts")
    if not os.path.isdir(path):
        return False
    if any(n.lower().endswith(".pts") for n in os.listdir(path)):
        return True
    return any(n.lower().endswith(".pts") for _, _, files in os.walk(path) for n in files)


_PTS_WRAPPED = re.compile(r"^\s*version\s*:.*?n_points\s*:\s*(\d+)\s*\{(.*)\}\s*$", re.DOTALL)


def _parse_pts(path: str):
    """(points (K, 2) 0-based, None) or (None, reason)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        return None, f"cannot read ({e.strerror})"
    m = _PTS_WRAPPED.match(text)
    declared = None
    if m:
        declared, body = int(m.group(1)), m.group(2)
    elif "{" in text or "n_points" in text:
        return None, "malformed .pts header (expected 'version: 1', 'n_points: K', '{', points, '}')"
    else:
        body = text
    rows = [ln.split() for ln in body.strip().splitlines() if ln.strip()]
    for i, r in enumerate(rows):
        if len(r) != 2:
            return None, f"point {i}: expected 'x y', got {' '.join(r)!r}"
    try:
        p = np.array(rows, dtype=np.float64).reshape(-1, 2)
    except ValueError:
        bad = next((i, r) for i, r in enumerate(rows) if not all(is_number(v) for v in r))
        return None, f"point {bad[0]}: {' '.join(bad[1])!r} is not a number"
    if not np.isfinite(p).all():
        return None, f"point {int(np.flatnonzero(~np.isfinite(p).all(1))[0])}: not a finite number"
    if declared is not None and declared != len(p):
        return None, f"n_points says {declared}, the file has {len(p)} points"
    if len(p) == 0:
        return None, "no points"
    return p - 1.0, None  # 300-W coordinates are 1-based


def read_pts(folder, strict: bool = False) -> LandmarkTable:
    """300-W style: every ``name.pts`` beside its image ``name.<ext>`` (searched recursively),
    with or without the ``version / n_points / { }`` wrapper; 1-based coordinates made 0-based."""
    folder = os.path.abspath(os.fspath(folder))
    skips = Skips(strict)
    if os.path.isfile(folder):
        pts_files = [folder]
        root = os.path.dirname(folder)
    else:
        root = folder
        pts_files = sorted(os.path.join(d, n) for d, _, fs in os.walk(folder) for n in fs if n.lower().endswith(".pts"))
    if not pts_files:
        raise DatasetError(f"{folder}: no .pts files")
    found = []
    for p in pts_files:
        stem = p[:-4]
        img = next((stem + e for e in IMAGE_EXTENSIONS + tuple(x.upper() for x in IMAGE_EXTENSIONS)
                    if os.path.isfile(stem + e)), None)
        if img is None:
            skips.add(p, None, "no image beside it (looked for " + ", ".join(IMAGE_EXTENSIONS) + ")")
            continue
        pts, why = _parse_pts(p)
        if why:
            skips.add(p, None, why)
            continue
        found.append((img, pts, p))
    if not found:
        return LandmarkTable(np.array([], dtype=str), np.zeros((0, 0, 2)), skips.items, root, "pts", folder)
    ks = np.array([len(f[1]) for f in found])
    vals, freq = np.unique(ks, return_counts=True)
    k = int(vals[np.argmax(freq)])
    files: list[str] = []
    kept: list[np.ndarray] = []
    for img, p, src in found:
        if len(p) != k:
            skips.add(src, None, f"{len(p)} points, the other files have {k}")
            continue
        files.append(img)
        kept.append(p)
    return LandmarkTable(np.array(files, dtype=str), np.stack(kept) if kept else np.zeros((0, k, 2)), skips.items,
                         root, "pts", folder)

