"""The value every label reader returns (:class:`LandmarkTable`), the error a dataset that cannot
be read raises (:class:`DatasetError`), and the collector of skipped rows the readers share."""

from __future__ import annotations

import dataclasses
import io
import os
from dataclasses import dataclass, field

import numpy as np

from augkit.errors import InputError

__all__ = ["PERSON_REGEX", "DatasetError", "LandmarkTable"]

#: ``--val-group person``: ytf68 / YouTube Faces names ``<Person_Name>_<frame>_<letter>.jpg``; the
#: first group is the person (``Person_Name``), so a split by person keeps a person on one side.
PERSON_REGEX = r"^(.+?)_\d+_[^_.]+(\.\w+)?$"


class DatasetError(InputError):
    """A dataset that cannot be read (or, with ``strict``, a bad row); the message names the file,
    the row and the field."""


@dataclass
class LandmarkTable:
    """Images and their landmarks.

    Attributes:
        files: absolute image paths, a numpy array of fixed-width strings (no per-row objects).
        points: 0-based pixel coordinates (OpenCV convention). Shape: (N, K, 2), float32.
        skipped: one dict per skipped row: ``file`` (the label or image file), ``row`` (line number
            in the label file, or None), ``reason``.
        root: the folder the images were looked up in.
        format: the reader used.
        source: the label file (or folder for ``pts``).
        sizes: optional ``(N, 2)`` int array of image (width, height), filled by ``verify_images``.
        lines: optional ``(N,)`` line number of each row in the label file.
        naming: the header naming seen (e.g. ``Point_M{i}_X / Point_M{i}_Y``, or "no header").
    """

    files: np.ndarray
    points: np.ndarray
    skipped: list = field(default_factory=list)
    root: str = ""
    format: str = ""
    source: str = ""
    sizes: np.ndarray | None = None
    lines: np.ndarray | None = None
    naming: str = ""

    def __post_init__(self):
        if not (isinstance(self.files, np.ndarray) and self.files.dtype.kind == "U"):
            self.files = np.array([os.fspath(f) for f in self.files], dtype=str)
        if self.points.dtype != np.float32:
            self.points = np.asarray(self.points, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def n_points(self) -> int:
        return int(self.points.shape[1])

    def subset(self, index) -> LandmarkTable:
        """The rows ``index`` (an int array or a boolean mask); ``skipped`` is shared."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)

        def pick(a):
            return None if a is None else a[index]
        return dataclasses.replace(self, files=self.files[index], points=self.points[index], sizes=pick(self.sizes),
                                   lines=pick(self.lines))

    def write_skipped(self, path) -> None:
        """Write ``skipped`` as a CSV with columns file, row, reason (atomically)."""
        import csv

        from augkit.files import atomic_write_text
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["file", "row", "reason"])
        for s in self.skipped:
            w.writerow([s["file"], "" if s["row"] is None else s["row"], s["reason"]])
        atomic_write_text(path, buf.getvalue())


class Skips:
    """Collects skipped rows, or raises on the first one when strict."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.items: list[dict] = []

    def add(self, file, row, reason, label=None):
        """Skip ``row`` (a line of ``file``, or, with ``label``, the line of ``label`` that lists the
        image ``file``)."""
        if self.strict:
            if label is not None:
                where = f"{file}" + (f" (line {row} of {label})" if row is not None else "")
            else:
                where = f"{file}" + (f", line {row}" if row is not None else "")
            raise DatasetError(f"{where}: {reason}")
        self.items.append({"file": str(file), "row": None if row is None else int(row), "reason": reason})
