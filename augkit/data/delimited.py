"""The delimited label formats: the competition's ``landmarks.csv`` (TSV, images under
``images/`` beside it) and a plain CSV (file name, then x0, y0, x1, y1, ...). Both go through the
block parser (:mod:`augkit.data.parser`); this module finds the label file and the image folder,
drops rows whose image is missing or whose file name came earlier, and builds the table.
"""

from __future__ import annotations

import os
import re

import numpy as np

from .parser import Parsed, parse_table
from .table import DatasetError, LandmarkTable

__all__ = [
    "LABEL_EXTENSIONS",
    "count_csv_files",
    "image_root",
    "is_competition",
    "is_csv",
    "label_file",
    "read_competition",
    "read_csv",
]

#: the label files a folder of the ``csv`` format may hold (exactly one of them)
LABEL_EXTENSIONS = (".csv", ".tsv", ".txt")
_COMPETITION_LABELS = ("landmarks.csv", os.path.join("train", "landmarks.csv"))


def _csv_files(folder: str) -> list:
    return sorted(n for n in os.listdir(folder) if n.lower().endswith(LABEL_EXTENSIONS))


def is_competition(path: str) -> bool:
    """A ``landmarks.csv`` layout: a folder holding ``landmarks.csv`` (or ``train/landmarks.csv``),
    or a label file whose header names the first point ``Point_0_X`` / ``Point_M0_X`` (or 1)."""
    if os.path.isdir(path):
        return any(os.path.isfile(os.path.join(path, c)) for c in _COMPETITION_LABELS)
    if not os.path.isfile(path) or path.lower().endswith(".pts"):
        return False
    with open(path, "rb") as f:
        head = f.readline().decode("utf-8", "replace")
    return re.search(r"Point_M?[01]_X", head, re.IGNORECASE) is not None


def is_csv(path: str) -> bool:
    """Any label file (the fallback), or a folder holding exactly one CSV / TSV / TXT file."""
    if os.path.isdir(path):
        return len(_csv_files(path)) == 1
    return os.path.isfile(path)


def count_csv_files(folder: str) -> int:
    """How many label files (:data:`LABEL_EXTENSIONS`) the folder holds (for error messages)."""
    return len(_csv_files(folder))


def label_file(path, fmt: str) -> str:
    """The label file of ``path`` (a file is its own; a folder's is found by the format's rule)."""
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise DatasetError(f"{path}: no such file or folder")
    if fmt == "competition":
        for cand in _COMPETITION_LABELS:
            if os.path.isfile(os.path.join(path, cand)):
                return os.path.join(path, cand)
        raise DatasetError(f"{path}: no landmarks.csv (competition layout: landmarks.csv + images/)")
    csvs = _csv_files(path)
    if len(csvs) != 1:
        raise DatasetError(f"{path}: expected exactly one CSV label file, found {len(csvs)}; pass the file itself")
    return os.path.join(path, csvs[0])


def image_root(label: str, images: str | None) -> str:
    """The image folder of a label file: ``images`` when given, else ``images/`` beside the file
    when there is one, else the file's own folder."""
    if images is not None:
        return os.path.abspath(images)
    folder = os.path.dirname(os.path.abspath(label))
    sub = os.path.join(folder, "images")
    return sub if os.path.isdir(sub) else folder


def _resolve_images(names, line_no, root, label, skips) -> np.ndarray:
    """Mask of the rows to keep: the first row of each file name whose image exists. Later rows of a
    name are skipped ("duplicate file name (also on line N)"), as are missing images. One directory
    listing, not a stat per file, for flat folders."""
    try:
        present = set(os.listdir(root))
    except FileNotFoundError:
        raise DatasetError(f"{label}: the image folder {root} does not exist") from None
    keep = np.zeros(len(names), dtype=bool)
    first_line: dict = {}
    for i, n in enumerate(names):
        seen = first_line.setdefault(n, int(line_no[i]))
        if seen != line_no[i]:
            skips.add(label, line_no[i], f"file {n!r}: duplicate file name (also on line {seen})")
        elif n in present or (os.sep in n or "/" in n) and os.path.isfile(os.path.join(root, n)):
            keep[i] = True
        else:
            skips.add(label, line_no[i], f"image {n!r} not found in {root}")
    return keep


def _compact(rows: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``rows[keep]`` in place (a view of the front of ``rows``), in slices: no second full copy."""
    index = np.flatnonzero(keep)
    if len(index) == len(rows):
        return rows
    step = 8192
    for s in range(0, len(index), step):
        part = index[s:s + step]          # part[j] >= s + j: its sources are not yet overwritten
        rows[s:s + len(part)] = rows[part]
    return rows[:len(index)]


def read_competition(label, strict: bool = False, images: str | None = None) -> LandmarkTable:
    """The competition's ``landmarks.csv``: a TSV with header ``file_name, Point_0_X, Point_0_Y, ...``
    (or the submission's ``Point_M0_X``, any x, y pair naming, or no header; integer or float values); images
    under ``images/`` beside it."""
    label = os.path.abspath(os.fspath(label))
    return _finish(parse_table(label, None, strict), label, image_root(label, images), "competition")


def read_csv(label, strict: bool = False, images: str | None = None, header: bool | None = None) -> LandmarkTable:
    """A plain CSV: file name, then x0, y0, x1, y1, ... (comma or tab; header or not)."""
    label = os.path.abspath(os.fspath(label))
    return _finish(parse_table(label, header, strict), label, image_root(label, images), "csv")


def _finish(parsed: Parsed, label, root, fmt) -> LandmarkTable:
    keep = _resolve_images(parsed.names, parsed.line_no, root, label, parsed.skips)
    values = _compact(parsed.values, keep)
    files = np.array([os.path.join(root, n) for n, k in zip(parsed.names, keep) if k], dtype=str)
    skipped = sorted(parsed.skips.items, key=lambda s: s["row"] if s["row"] is not None else -1)
    table = LandmarkTable(files, values.reshape(len(values), values.shape[1] // 2, 2), skipped, root, fmt, label,
                          lines=_compact(parsed.line_no, keep), naming=parsed.naming)
    return table

