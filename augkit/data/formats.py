"""The registry of label formats: each format is a name, a ``detect`` test and a ``read`` function.

Adding a format is one :func:`register` call (or one entry below): ``read_dataset``, format
detection and the ``--format`` choices of ``augkit train`` (:data:`FORMAT_NAMES`) all come from
the registry. Detection tries the formats in the order they were registered, those marked
``fallback`` (the plain CSV: any file) last; the first whose ``detect`` says yes reads the data.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from .delimited import (
    count_csv_files,
    is_competition,
    is_csv,
    label_file,
    read_competition,
    read_csv,
)
from .public import is_coco_json, is_hrnet_csv, is_wflw, read_coco_json, read_hrnet_csv, read_wflw
from .pts import is_pts, read_pts
from .table import DatasetError, LandmarkTable

__all__ = ["FORMAT_NAMES", "LabelFormat", "detect_format", "format_names", "read_dataset", "register"]


@dataclass(frozen=True)
class LabelFormat:
    """One label format.

    Attributes:
        name: what ``--format`` and ``read_dataset(format=...)`` call it.
        detect: ``detect(path) -> bool``: does this file or folder hold data of this format.
        read: ``read(path, strict, images) -> LandmarkTable`` (``path``: the file or folder the user
            gave; ``images``: the image folder when not the default one, or None).
        description: one line for help texts.
        fallback: a catch-all (``detect`` says yes to most inputs): tried after every other format.
    """

    name: str
    detect: Callable[[str], bool]
    read: Callable[[str, bool, str | None], LandmarkTable]
    description: str = ""
    fallback: bool = False


_REGISTRY: dict[str, LabelFormat] = {}


def register(fmt: LabelFormat) -> LabelFormat:
    """Add ``fmt`` to the registry (a name already there is replaced in its place)."""
    _REGISTRY[fmt.name] = fmt
    return fmt


def format_names() -> tuple:
    """The registered format names, in alphabetical order (the ``--format`` choices)."""
    return tuple(sorted(_REGISTRY))


register(LabelFormat(
    "competition", is_competition,
    lambda path, strict, images: read_competition(label_file(path, "competition"), strict=strict, images=images),
    "landmarks.csv (TSV: file_name, Point_0_X, Point_0_Y, ...) with images/ beside it"))
register(LabelFormat(
    "pts", is_pts, lambda path, strict, images: read_pts(path, strict=strict),
    "300-W: name.pts beside each image name.<ext> (searched recursively)"))
register(LabelFormat(
    "wflw", is_wflw, lambda path, strict, images: read_wflw(path, strict=strict, images=images),
    "WFLW list_98pt_rect_attr_*.txt: 98 x, y, the box, 6 attribute flags, the image path (WFLW_images/)"))
register(LabelFormat(
    "coco", is_coco_json, lambda path, strict, images: read_coco_json(path, strict=strict, images=images),
    "COCO-style keypoint JSON (mmpose's COFW, AFLW, WFLW, 300-W files), images/ beside it or its folder"))
register(LabelFormat(
    "hrnet", is_hrnet_csv, lambda path, strict, images: read_hrnet_csv(path, strict=strict, images=images),
    "HRNet CSV: image_name, scale, [box_size,] center_w, center_h, x, y pairs (AFLW-19, 300-W, WFLW)"))
register(LabelFormat(
    "csv", is_csv,
    lambda path, strict, images: read_csv(label_file(path, "csv"), strict=strict, images=images),
    "a CSV or TSV: file name, then x0, y0, x1, y1, ... (header or not)", fallback=True))

#: the built-in format names (alphabetical): the ``--format`` choices
FORMAT_NAMES = format_names()


def detect_format(path) -> str:
    """Which registered format fits ``path`` (a label file or a dataset folder)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DatasetError(f"{path}: no such file or folder")
    for fmt in sorted(_REGISTRY.values(), key=lambda f: f.fallback):   # stable: registration order
        if fmt.detect(path):
            return fmt.name
    raise DatasetError(f"{path}: cannot tell the dataset format (no landmarks.csv, no .pts files, "
                       f"{count_csv_files(path) if os.path.isdir(path) else 0} CSV files); "
                       "pass --format and the label file itself")


def read_dataset(path, format: str | None = None, strict: bool = False, images: str | None = None) -> LandmarkTable:
    """Read a landmark dataset.

    Args:
        path: a label file, or a folder (competition: ``landmarks.csv`` + ``images/``, or its
            parent holding ``train/``; pts: a folder of images with ``.pts`` beside them; csv: a
            folder with exactly one CSV).
        format: a registered format name (:func:`format_names`) or None (detect).
        strict: raise :class:`DatasetError` on the first bad row instead of skipping it.
        images: the image folder, when it is not the default one.

    Returns:
        LandmarkTable
    """
    path = os.fspath(path)
    name = format or detect_format(path)
    if name not in _REGISTRY:
        raise DatasetError(f"unknown dataset format {name!r}; expected one of {', '.join(format_names())}")
    table = _REGISTRY[name].read(path, strict, images)
    if len(table) == 0:
        why = f"; {len(table.skipped)} rows skipped, first: {table.skipped[0]['reason']}" if table.skipped else ""
        raise DatasetError(f"{table.source}: the dataset is empty (no usable rows){why}")
    return table
