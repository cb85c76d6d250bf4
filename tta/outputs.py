"""Prediction files: the competition submission, and CSV/JSON of all points (+ uncertainty).

All writes are atomic (``augkit.config.atomic_write_text``).
"""

from __future__ import annotations

import io
import json
import os

import numpy as np

from augkit.config import atomic_write_text

__all__ = ["submission_text", "write_submission", "points_csv_text", "points_json_text", "write_points",
           "round_half_up"]


def round_half_up(x) -> np.ndarray:
    """Nearest integer (halves away from zero), as int64; never truncation."""
    x = np.asarray(x, dtype=np.float64)
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


def submission_text(test_points, predictions: dict) -> tuple[str, list]:
    """The competition submission for ``test_points`` (``[(file_name, [indices])]``, the rows of
    ``test_points.csv`` in order) from ``predictions`` (``file_name -> (K, 2)`` points).

    Header ``file_name,Point_M0_X,Point_M0_Y,...`` (one pair per listed index, in list order);
    values rounded to the nearest integer. Files without a (finite) prediction are left out and
    returned as the second value.
    """
    width = max((len(idx) for _, idx in test_points), default=0)
    out = io.StringIO()
    out.write(",".join(["file_name"] + [f"Point_M{i}_{a}" for i in range(width) for a in ("X", "Y")]) + "\n")
    missing = []
    for name, idx in test_points:
        if not len(idx):
            raise ValueError(f"{name}: test_points lists no point indices")
        pts = predictions.get(name)
        if pts is not None:
            pts = np.asarray(pts, dtype=np.float64)
            if max(idx) >= len(pts) or min(idx) < 0:
                raise ValueError(f"{name}: test_points lists index {max(idx) if max(idx) >= len(pts) else min(idx)}, "
                                 f"the model predicts points 0..{len(pts) - 1}")
        if pts is None or not np.isfinite(pts[idx]).all():
            missing.append(name)
            continue
        vals = round_half_up(pts[idx]).reshape(-1)
        out.write(name + "," + ",".join(str(int(v)) for v in vals) + "\n")
    return out.getvalue(), missing


def write_submission(path, test_points, predictions: dict) -> list:
    """Write the submission atomically; returns the file names left out (no prediction)."""
    text, missing = submission_text(test_points, predictions)
    atomic_write_text(path, text)
    return missing


def points_csv_text(names, points, spread=None, decimals: int = 3) -> str:
    """CSV with ``file_name,Point_0_X,Point_0_Y,...`` (+ ``Point_k_S``, the spread, when given)."""
    points = np.asarray(points, dtype=np.float64)
    k = points.shape[1] if points.ndim == 3 else 0
    cols = ["file_name"] + [f"Point_{i}_{a}" for i in range(k) for a in ("X", "Y")]
    if spread is not None:
        cols += [f"Point_{i}_S" for i in range(k)]
    lines = [",".join(cols)]
    fmt = f"{{:.{decimals}f}}"
    for j, name in enumerate(names):
        vals = [fmt.format(v) for v in points[j].reshape(-1)]
        if spread is not None:
            vals += [fmt.format(v) for v in np.asarray(spread[j]).reshape(-1)]
        lines.append(",".join([_csv_field(name)] + vals))
    return "\n".join(lines) + "\n"


def _csv_field(s: str) -> str:
    return '"' + s.replace('"', '""') + '"' if any(c in s for c in ',"\n') else s


def points_json_text(names, points, spread=None, decimals: int = 3) -> str:
    """JSON ``{"images": [{"file_name", "points": [[x, y], ...], "uncertainty": [...]}]}``."""
    items = []
    for j, name in enumerate(names):
        d = {"file_name": name, "points": np.round(np.asarray(points[j], dtype=np.float64), decimals).tolist()}
        if spread is not None:
            d["uncertainty"] = np.round(np.asarray(spread[j], dtype=np.float64), decimals).tolist()
        items.append(d)
    return json.dumps({"images": items}, indent=1) + "\n"


def write_points(path, names, points, spread=None, fmt: str | None = None) -> None:
    """Write all points as CSV or JSON (by ``fmt`` or the extension), atomically."""
    fmt = fmt or ("json" if os.fspath(path).lower().endswith(".json") else "csv")
    text = points_json_text(names, points, spread) if fmt == "json" else points_csv_text(names, points, spread)
    atomic_write_text(path, text)
