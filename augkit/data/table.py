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
        boxes: optional ``(N, 4)`` float32 face box of each row, ``x_min, y_min, x_max, y_max``
            (pixels, the coordinates of ``points``): WFLW's box, the ``bbox`` of a COCO-style
            JSON, the crop box of an HRNet CSV.
        box_size: optional ``(N,)`` float32 face size the benchmark normalises by where the
            label file gives one (AFLW: HRNet's ``box_size`` column); else :func:`augkit.metrics.box_size`
            takes ``sqrt(w * h)`` of ``boxes``.
        attributes: optional mapping name -> ``(N,)`` uint8 flags of each row (WFLW: ``pose``,
            ``expression``, ``illumination``, ``make-up``, ``occlusion``, ``blur``), or None.
        visible: optional ``(N, K)`` bool: the point is visible (False: occluded or not labelled,
            as the COCO-style JSON's visibility flag or COFW's occlusion flag says), or None.

    Every extra is one numpy array per field (no per-row Python objects): 400k rows of WFLW add
    400k x 4 float32 boxes and 6 x 400k bytes of flags.
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
    boxes: np.ndarray | None = None
    box_size: np.ndarray | None = None
    attributes: dict | None = None
    visible: np.ndarray | None = None

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
        attributes = None if self.attributes is None else {k: v[index] for k, v in self.attributes.items()}
        return dataclasses.replace(self, files=self.files[index], points=self.points[index], sizes=pick(self.sizes),
                                   lines=pick(self.lines), boxes=pick(self.boxes), box_size=pick(self.box_size),
                                   attributes=attributes, visible=pick(self.visible))

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
