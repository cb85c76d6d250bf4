"""Prediction files: the competition submission, and CSV/JSON of all points (+ uncertainty).

Uncertainty columns: ``Point_k_S``, the TTA spread (std of the inverted views), for every k; then,
with models that report σ, ``Point_k_SIGMA``, the merged model σ (original pixels, after the spec's
``sigma_scale``), for every k. JSON: ``"uncertainty"`` (the spread) and ``"sigma"``.

Each format has a streaming writer (rows written as chunks of predictions come back) used inside
``augkit.files.atomic_open`` (a temporary file renamed onto the real one at the end), and a
one-shot ``*_text`` / ``write_*`` form built on the same writer. File names are CSV-quoted by the
``csv`` module when they hold a comma, a quote or a line break.
"""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np

from augkit.errors import InputError
from augkit.files import atomic_write_text

__all__ = [
    "PointsCSVWriter",
    "PointsJSONWriter",
    "SubmissionWriter",
    "check_test_points",
    "points_csv_text",
    "points_json_text",
    "points_writer",
    "round_half_up",
    "submission_text",
    "write_points",
    "write_submission",
]


def round_half_up(x) -> np.ndarray:
    """Nearest integer (halves away from zero), as int64; never truncation."""
    x = np.asarray(x, dtype=np.float64)
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


def check_test_points(test_points, n_points: int, source: str = "test_points.csv") -> None:
    """Raise ``ValueError`` naming the file, line and index when a row lists no index or an index
    outside ``0..n_points-1`` (line numbers count the header as line 1)."""
    for row, (name, idx) in enumerate(test_points, start=2):
        if not len(idx):
            raise InputError(f"{source}: line {row}: file {name!r}: point_index_list is empty; expected indices "
                             f"0..{n_points - 1}")
        bad = [v for v in idx if not 0 <= v < n_points]
        if bad:
            raise InputError(f"{source}: line {row}: file {name!r}: point index {bad[0]} is outside 0..{n_points - 1} "
                             f"(the model predicts {n_points} points)")


class SubmissionWriter:
    """Streams the submission: header ``file_name,Point_M0_X,Point_M0_Y,...`` (one pair per listed
    index, ``width`` pairs), then one row per image with the listed points rounded to integers."""

    def __init__(self, f, width: int):
        self._w = csv.writer(f, lineterminator="\n")
        self._w.writerow(["file_name"] + [f"Point_M{i}_{a}" for i in range(width) for a in ("X", "Y")])
        self.rows = 0

    def write(self, name: str, idx, points) -> bool:
        """Write ``name``'s row from its ``(K, 2)`` points; False (nothing written) when a listed point
        is not finite."""
        if not len(idx):
            raise InputError(f"{name}: test_points lists no point indices")
        pts = np.asarray(points, dtype=np.float64)
        if max(idx) >= len(pts) or min(idx) < 0:
            raise InputError(f"{name}: test_points lists index {max(idx) if max(idx) >= len(pts) else min(idx)}, "
                             f"the model predicts points 0..{len(pts) - 1}")
        sel = pts[idx]
        if not np.isfinite(sel).all():
            return False
        self._w.writerow([name] + [str(int(v)) for v in round_half_up(sel).reshape(-1)])
        self.rows += 1
        return True


def submission_text(test_points, predictions: dict) -> tuple[str, list]:
    """The competition submission for ``test_points`` (``[(file_name, [indices])]``, the rows of
    ``test_points.csv`` in order) from ``predictions`` (``file_name -> (K, 2)`` points).

    Values rounded to the nearest integer. Files without a (finite) prediction are left out and
    returned as the second value.
    """
    out = io.StringIO()
    width = max((len(idx) for _, idx in test_points), default=0)
    w = SubmissionWriter(out, width)
    missing = []
    for name, idx in test_points:
        if not len(idx):
            raise InputError(f"{name}: test_points lists no point indices")
        pts = predictions.get(name)
        if pts is None or not w.write(name, idx, pts):
            missing.append(name)
    return out.getvalue(), missing


def write_submission(path, test_points, predictions: dict) -> list:
    """Write the submission atomically; returns the file names left out (no prediction)."""
    text, missing = submission_text(test_points, predictions)
    atomic_write_text(path, text)
    return missing


class PointsCSVWriter:
    """Streams ``file_name,Point_0_X,Point_0_Y,...`` (+ ``Point_k_S``, the spread, when ``with_spread``;
    + ``Point_k_SIGMA``, the model σ, after all of them when ``with_sigma``); the header is written
    with the first row (K is known then)."""

    def __init__(self, f, with_spread: bool = False, decimals: int = 3, with_sigma: bool = False):
        self.f, self.with_spread, self.fmt = f, with_spread, f"{{:.{decimals}f}}"
        self.with_sigma = with_sigma
        self._w = csv.writer(f, lineterminator="\n")
        self.k: int | None = None
        self.rows = 0

    def _header(self, k: int) -> None:
        cols = ["file_name"] + [f"Point_{i}_{a}" for i in range(k) for a in ("X", "Y")]
        if self.with_spread:
            cols += [f"Point_{i}_S" for i in range(k)]
        if self.with_sigma:
            cols += [f"Point_{i}_SIGMA" for i in range(k)]
        self._w.writerow(cols)
        self.k = k

    def write(self, name: str, points, spread=None, sigma=None) -> None:
        """One row: ``points`` (K, 2), ``spread`` (K,) and ``sigma`` (K,) when the writer has them."""
        pts = np.asarray(points, dtype=np.float64)
        if self.k is None:
            self._header(pts.shape[0])
        vals = [self.fmt.format(v) for v in pts.reshape(-1).tolist()]
        if self.with_spread:
            vals += [self.fmt.format(v) for v in np.asarray(spread, dtype=np.float64).reshape(-1).tolist()]
        if self.with_sigma:
            vals += [self.fmt.format(v) for v in _sigma_row(sigma, name)]
        self._w.writerow([name] + vals)
        self.rows += 1

    def close(self, k: int = 0) -> None:
        """Finish the file (a header alone when no row was written)."""
        if self.k is None:
            self._header(k)


def _sigma_row(sigma, name: str) -> list:
    if sigma is None:
        raise InputError(f"{name}: the writer has σ columns but no σ was given for this row")
    return np.asarray(sigma, dtype=np.float64).reshape(-1).tolist()


class PointsJSONWriter:
    """Streams ``{"images": [{"file_name", "points": [[x, y], ...], "uncertainty": [...], "sigma": [...]}]}``
    (``uncertainty``, the spread, when ``with_spread``; ``sigma``, the model σ, when ``with_sigma``;
    the same text as ``json.dumps(..., indent=1)`` of the whole list)."""

    def __init__(self, f, with_spread: bool = False, decimals: int = 3, with_sigma: bool = False):
        self.f, self.with_spread, self.decimals = f, with_spread, decimals
        self.with_sigma = with_sigma
        self.rows = 0

    def write(self, name: str, points, spread=None, sigma=None) -> None:
        """One image: ``points`` (K, 2), ``spread`` (K,) and ``sigma`` (K,) when the writer has them."""
        d = {"file_name": name, "points": np.round(np.asarray(points, dtype=np.float64), self.decimals).tolist()}
        if self.with_spread:
            d["uncertainty"] = np.round(np.asarray(spread, dtype=np.float64), self.decimals).tolist()
        if self.with_sigma:
            d["sigma"] = np.round(np.array(_sigma_row(sigma, name)), self.decimals).tolist()
        text = json.dumps(d, indent=1).replace("\n", "\n  ")
        self.f.write(('{\n "images": [\n  ' if self.rows == 0 else ",\n  ") + text)
        self.rows += 1

    def close(self, k: int = 0) -> None:
        self.f.write('{\n "images": []\n}\n' if self.rows == 0 else "\n ]\n}\n")


def points_writer(f, fmt: str, with_spread: bool = False, decimals: int = 3,
                  with_sigma: bool = False) -> PointsCSVWriter | PointsJSONWriter:
    """A ``PointsCSVWriter`` (``fmt="csv"``) or ``PointsJSONWriter`` (``"json"``) on ``f``."""
    if fmt not in ("csv", "json"):
        raise InputError(f"points format must be csv or json, got {fmt!r}")
    cls = PointsJSONWriter if fmt == "json" else PointsCSVWriter
    return cls(f, with_spread, decimals, with_sigma)


def _points_text(fmt, names, points, spread=None, decimals: int = 3, sigma=None) -> str:
    out = io.StringIO()
    w = points_writer(out, fmt, spread is not None, decimals, sigma is not None)
    for j, name in enumerate(names):
        w.write(name, points[j], None if spread is None else spread[j], None if sigma is None else sigma[j])
    w.close(np.asarray(points).shape[1] if np.asarray(points).ndim == 3 else 0)
    return out.getvalue()


def points_csv_text(names, points, spread=None, decimals: int = 3, sigma=None) -> str:
    """CSV with ``file_name,Point_0_X,Point_0_Y,...`` (+ ``Point_k_S``, the spread, when given; +
    ``Point_k_SIGMA``, the model σ (N, K), when given)."""
    return _points_text("csv", names, points, spread, decimals, sigma)


def points_json_text(names, points, spread=None, decimals: int = 3, sigma=None) -> str:
    """JSON ``{"images": [{"file_name", "points": [[x, y], ...], "uncertainty": [...], "sigma": [...]}]}``."""
    return _points_text("json", names, points, spread, decimals, sigma)


def write_points(path, names, points, spread=None, fmt: str | None = None, sigma=None) -> None:
    """Write all points as CSV or JSON (by ``fmt`` or the extension), atomically; ``spread`` and
    ``sigma`` (N, K) add their columns when given."""
    fmt = fmt or ("json" if os.fspath(path).lower().endswith(".json") else "csv")
    atomic_write_text(path, _points_text(fmt, names, points, spread, sigma=sigma))
