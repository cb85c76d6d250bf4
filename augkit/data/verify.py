"""Image checks after reading labels: decode every image (or read its header), record the sizes,
and drop rows whose image is corrupt or whose labels lie far outside it."""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .table import DatasetError, LandmarkTable, Skips

__all__ = ["OUTSIDE_MARGIN", "verify_images"]

#: labels further than this fraction of the image's width (x) or height (y) outside the image are
#: skipped by :func:`verify_images` (a 200 px wide image accepts x in [-100, 300]).
OUTSIDE_MARGIN = 0.5


def _probe(path):
    """((width, height), None) of the decoded image, or (None, why) without the path."""
    from augkit.io import ImageReadError, read_image
    try:
        img = read_image(path)
    except ImageReadError as e:
        return None, _without_path(str(e), path)
    return (img.shape[1], img.shape[0]), None


def _without_path(message: str, path) -> str:
    prefix = f"{path}: "
    return message.removeprefix(prefix)


def _header_size(path):
    """((width, height) as displayed, None) from the image header (the same EXIF reading as the
    decoder: orientations 5-8 swap width and height), or (None, why) without the path."""
    from augkit.io import ImageReadError, image_size
    try:
        return tuple(image_size(path)), None
    except ImageReadError as e:
        return None, _without_path(str(e), path)


def _far_outside(points: np.ndarray, sizes: np.ndarray, margin: float = OUTSIDE_MARGIN, rows: int = 4096):
    """For each row: None, or (point index, x, y) of its first point more than ``margin`` of the
    image's width / height outside the image. Checked in slices of ``rows`` (bounded memory)."""
    found = {}
    for s in range(0, len(points), rows):
        p = points[s:s + rows]
        wh = sizes[s:s + rows, None, :].astype(np.float32)
        out = np.any((p < -margin * wh) | (p > (1 + margin) * wh), axis=2)
        for r in np.flatnonzero(out.any(axis=1)):
            k = int(np.argmax(out[r]))
            found[s + int(r)] = (k, float(p[r, k, 0]), float(p[r, k, 1]), int(out[r].sum()))
    return found


def verify_images(table: LandmarkTable, strict: bool = False, decode: bool = True, threads: int | None = None,
                  progress: bool = False) -> LandmarkTable:
    """Decode every image (``decode=False``: read the header only), record sizes, and drop rows
    whose image is corrupt or whose labels lie far outside it (more than :data:`OUTSIDE_MARGIN` of
    the width / height beyond the border); counted in ``skipped`` with the line of the label file,
    ``strict`` raises naming the image and that line. Returns a new table (sharing the points
    array when no row is dropped)."""
    skips = Skips(strict)
    skips.items = list(table.skipped)
    label = table.source or None
    line = (lambda i: None) if table.lines is None else (lambda i: int(table.lines[i]))
    fn = _probe if decode else _header_size
    threads = threads or min(8, (os.cpu_count() or 2) * 2)
    sizes = np.zeros((len(table), 2), dtype=np.int64)
    keep = np.ones(len(table), dtype=bool)
    with ThreadPoolExecutor(threads) as ex:
        results = ex.map(fn, table.files, chunksize=16)
        if progress:
            from tqdm.auto import tqdm
            results = tqdm(results, total=len(table), desc="checking images", unit="img", leave=False)
        for i, (size, why) in enumerate(results):
            if why:
                keep[i] = False
                skips.add(table.files[i], line(i), why, label)
            else:
                sizes[i] = size
    for i, (k, x, y, count) in sorted(_far_outside(table.points, sizes).items()):
        if keep[i]:
            keep[i] = False
            w, h = sizes[i]
            skips.add(table.files[i], line(i), f"labels far outside the image: {count} point(s) more than "
                      f"{OUTSIDE_MARGIN:.0%} of the image size outside it, e.g. point {k} at ({x:g}, {y:g}) in a "
                      f"{w}x{h} image", label)
    out = dataclasses.replace(table, sizes=sizes) if keep.all() else table.subset(keep)
    if not keep.all():
        out.sizes = sizes[keep]
    out.skipped = skips.items
    if len(out) == 0:
        raise DatasetError(f"{table.source}: the dataset is empty (no readable images)")
    return out
