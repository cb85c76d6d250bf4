"""Landmark dataset readers: the competition layout, plain CSV and 300-W ``.pts`` folders.

Every reader returns a :class:`LandmarkTable`: absolute image paths, an ``(N, K, 2)`` float64
array of 0-based OpenCV pixel coordinates, and the rows it skipped (file, row, reason). Bad rows are
skipped and counted by default; ``strict=True`` makes the first one an error that names the file,
the row (the line number in the label file, 1-based, the header being line 1) and the field.

Parsing is vectorised (numpy over the raw bytes to count fields per line, then pandas' C parser):
400k rows load in seconds. Image files are checked for existence here; decoding them (corrupt
files) is :func:`verify_images`' job, which the training command runs with a thread pool.

numpy and pandas only: no torch.
"""

from __future__ import annotations

import ast
import io
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LandmarkTable", "DatasetError", "read_dataset", "read_competition", "read_csv", "read_pts",
           "read_test_points", "detect_format", "verify_images", "FORMATS", "IMAGE_EXTENSIONS"]

FORMATS = ("competition", "csv", "pts")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class DatasetError(ValueError):
    """A dataset that cannot be read (or, with ``strict``, a bad row); the message names the file,
    the row and the field."""


@dataclass
class LandmarkTable:
    """Images and their landmarks.

    Attributes:
        files: absolute image paths.
        points: 0-based pixel coordinates (OpenCV convention). Shape: (N, K, 2), float64.
        skipped: one dict per skipped row: ``file`` (the label or image file), ``row`` (line number
            in the label file, or None), ``reason``.
        root: the folder the images were looked up in.
        format: the reader used.
        source: the label file (or folder for ``pts``).
        sizes: optional ``(N, 2)`` int array of image (width, height), filled by :func:`verify_images`.
    """

    files: list
    points: np.ndarray
    skipped: list = field(default_factory=list)
    root: str = ""
    format: str = ""
    source: str = ""
    sizes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.files)

    @property
    def n_points(self) -> int:
        return int(self.points.shape[1])

    def subset(self, index) -> "LandmarkTable":
        """The rows ``index`` (an int array or a boolean mask); ``skipped`` is shared."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return LandmarkTable([self.files[i] for i in index], self.points[index], self.skipped, self.root,
                             self.format, self.source, None if self.sizes is None else self.sizes[index])

    def write_skipped(self, path) -> None:
        """Write ``skipped`` as a CSV with columns file, row, reason (atomically)."""
        import csv
        from augkit.config import atomic_write_text
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["file", "row", "reason"])
        for s in self.skipped:
            w.writerow([s["file"], "" if s["row"] is None else s["row"], s["reason"]])
        atomic_write_text(path, buf.getvalue())


class _Skips:
    """Collects skipped rows, or raises on the first one when strict."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.items: list[dict] = []

    def add(self, file, row, reason):
        if self.strict:
            where = f"{file}" + (f", line {row}" if row is not None else "")
            raise DatasetError(f"{where}: {reason}")
        self.items.append({"file": str(file), "row": None if row is None else int(row), "reason": reason})


# ---------------------------------------------------------------------------------------- detection

def detect_format(path) -> str:
    """Which reader fits ``path``: "competition", "csv" or "pts"."""
    path = os.fspath(path)
    if os.path.isfile(path):
        if path.lower().endswith(".pts"):
            return "pts"
        with open(path, "rb") as f:
            head = f.readline().decode("utf-8", "replace")
        return "competition" if re.search(r"Point_0_X", head) else "csv"
    if not os.path.isdir(path):
        raise DatasetError(f"{path}: no such file or folder")
    for cand in ("landmarks.csv", os.path.join("train", "landmarks.csv")):
        if os.path.isfile(os.path.join(path, cand)):
            return "competition"
    names = os.listdir(path)
    if any(n.lower().endswith(".pts") for n in names):
        return "pts"
    for dirpath, _, files in os.walk(path):
        if any(n.lower().endswith(".pts") for n in files):
            return "pts"
    csvs = [n for n in names if n.lower().endswith((".csv", ".tsv", ".txt"))]
    if len(csvs) == 1:
        return "csv"
    raise DatasetError(f"{path}: cannot tell the dataset format (no landmarks.csv, no .pts files, "
                       f"{len(csvs)} CSV files); pass --format and the label file itself")


def read_dataset(path, format: str | None = None, strict: bool = False, images: str | None = None):
    """Read a landmark dataset.

    Args:
        path: a label file, or a folder (competition: ``landmarks.csv`` + ``images/``, or its
            parent holding ``train/``; pts: a folder of images with ``.pts`` beside them; csv: a
            folder with exactly one CSV).
        format: "competition", "csv", "pts" or None (detect).
        strict: raise :class:`DatasetError` on the first bad row instead of skipping it.
        images: the image folder, when it is not the default one.

    Returns:
        LandmarkTable
    """
    path = os.fspath(path)
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise DatasetError(f"unknown dataset format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "pts":
        table = read_pts(path, strict=strict)
    else:
        label = _label_file(path, fmt)
        table = (read_competition if fmt == "competition" else read_csv)(label, strict=strict, images=images)
    if len(table) == 0:
        why = f"; {len(table.skipped)} rows skipped, first: {table.skipped[0]['reason']}" if table.skipped else ""
        raise DatasetError(f"{table.source}: the dataset is empty (no usable rows){why}")
    return table


def _label_file(path, fmt):
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise DatasetError(f"{path}: no such file or folder")
    if fmt == "competition":
        for cand in ("landmarks.csv", os.path.join("train", "landmarks.csv")):
            if os.path.isfile(os.path.join(path, cand)):
                return os.path.join(path, cand)
        raise DatasetError(f"{path}: no landmarks.csv (competition layout: landmarks.csv + images/)")
    csvs = sorted(n for n in os.listdir(path) if n.lower().endswith((".csv", ".tsv", ".txt")))
    if len(csvs) != 1:
        raise DatasetError(f"{path}: expected exactly one CSV label file, found {len(csvs)}; pass the file itself")
    return os.path.join(path, csvs[0])


def _image_root(label: str, images: str | None) -> str:
    if images is not None:
        return os.path.abspath(images)
    folder = os.path.dirname(os.path.abspath(label))
    sub = os.path.join(folder, "images")
    return sub if os.path.isdir(sub) else folder


# ----------------------------------------------------------------------------------- delimited text

def _split_lines(data: bytes):
    """Line start/end offsets (no terminators) and line numbers, vectorised."""
    buf = np.frombuffer(data, dtype=np.uint8)
    nl = np.flatnonzero(buf == 10)
    starts = np.concatenate([[0], nl + 1])
    ends = np.concatenate([nl, [len(buf)]])
    # strip \r
    cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13) if len(buf) else np.zeros(len(ends), bool)
    ends = ends - cr.astype(ends.dtype)
    return buf, starts, ends


def _fields_per_line(buf, starts, ends, sep: int):
    """Number of fields on each line (separators + 1), without a Python loop."""
    counts = np.zeros(len(starts), dtype=np.int64)
    ok = starts < len(buf)
    if ok.any():
        # each segment runs to the next line's start; it holds no separator beyond its own line
        counts[ok] = np.add.reduceat(buf == sep, starts[ok], dtype=np.int64)
    counts[ends <= starts] = 0
    return counts + 1


def _parse_table(label: str, sep: str | None, header: bool | None, strict: bool, expect_names=None):
    """Parse a delimited label file: a name column then numbers.

    Returns (names, values (N, F) float64, line numbers, column names, skips).
    """
    import pandas as pd

    skips = _Skips(strict)
    try:
        with open(label, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DatasetError(f"{label}: label file not found") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    buf, starts, ends = _split_lines(data)
    nonblank = np.flatnonzero(ends > starts)
    if nonblank.size == 0:
        raise DatasetError(f"{label}: the file is empty")
    first = bytes(buf[starts[nonblank[0]]:ends[nonblank[0]]]).decode("utf-8", "replace")
    if sep is None:
        sep = "\t" if first.count("\t") >= max(1, first.count(",")) else ","
    cells = [c.strip() for c in first.split(sep)]
    if header is None:
        # a header names its columns: most of its value fields are not numbers (one bad value
        # in a data row is a row to skip, not a header)
        values = cells[1:]
        header = len(cells) < 2 or sum(not _is_number(v) for v in values) > len(values) // 2
    nfields = _fields_per_line(buf, starts, ends, ord(sep))
    lines = nonblank
    columns = None
    if header:
        columns = cells
        lines = lines[1:]
        expected = len(cells)
    else:
        counts = nfields[lines]
        vals, freq = np.unique(counts, return_counts=True)
        expected = int(vals[np.argmax(freq)])
    if expected < 3 or (expected - 1) % 2:
        raise DatasetError(f"{label}: line {nonblank[0] + 1}: expected a file name then x, y pairs, got "
                           f"{expected} fields ({expected - 1} values: {'odd' if (expected - 1) % 2 else 'too few'})")
    if expect_names is not None and columns is not None:
        bad = [(i, c, e) for i, (c, e) in enumerate(zip(columns, expect_names(expected))) if c != e]
        if bad:
            i, c, e = bad[0]
            raise DatasetError(f"{label}: line 1 (header): column {i + 1} is {c!r}, expected {e!r}")
    if columns is None:
        k = (expected - 1) // 2
        columns = ["file_name"] + [f"{a}{i}" for i in range(k) for a in ("x", "y")]
    bad_count = lines[nfields[lines] != expected]
    for ln in bad_count:
        name = bytes(buf[starts[ln]:ends[ln]]).decode("utf-8", "replace").split(sep)[0]
        skips.add(label, ln + 1, f"file {name!r}: {nfields[ln] - 1} values, expected {expected - 1} "
                                 f"({(expected - 1) // 2} x, y pairs)")
    good = lines[nfields[lines] == expected]
    if good.size == 0:
        return [], np.zeros((0, expected - 1)), good + 1, columns, skips, sep
    if bad_count.size == 0 and (not header or good.size == lines.size):
        body = data[starts[good[0]]:]
    else:
        body = b"\n".join(data[starts[i]:ends[i]] for i in good)
    frame = pd.read_csv(io.BytesIO(body), sep=sep, header=None, names=list(range(expected)), dtype={0: str},
                        skip_blank_lines=True, engine="c", na_filter=True, keep_default_na=True)
    names = frame[0].astype(str).str.strip().tolist()
    vals = frame.iloc[:, 1:]
    numeric = np.empty((len(frame), expected - 1), dtype=np.float64)
    raw_obj = {}
    for j in range(expected - 1):
        col = vals.iloc[:, j]
        if not pd.api.types.is_numeric_dtype(col):
            raw_obj[j] = col
            numeric[:, j] = pd.to_numeric(col, errors="coerce").to_numpy(np.float64)
        else:
            numeric[:, j] = col.to_numpy(np.float64)
    line_no = good + 1
    bad_rows = ~np.isfinite(numeric).all(axis=1)
    keep = ~bad_rows
    for r in np.flatnonzero(bad_rows):
        j = int(np.flatnonzero(~np.isfinite(numeric[r]))[0])
        raw = raw_obj[j].iloc[r] if j in raw_obj else numeric[r, j]
        what = "is empty" if raw is None or (isinstance(raw, float) and np.isnan(raw)) else f"{raw!r} is not a finite number"
        skips.add(label, line_no[r], f"file {names[r]!r}: field {columns[j + 1]} {what}")
    names = [n for n, k in zip(names, keep) if k]
    return names, numeric[keep], line_no[keep], columns, skips, sep


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _competition_names(n):
    k = (n - 1) // 2
    return ["file_name"] + [f"Point_{i}_{a}" for i in range(k) for a in ("X", "Y")]


def _resolve_images(names, line_no, root, label, skips):
    """Absolute paths of existing images; missing ones are skipped. One directory listing, not a
    stat per file, for flat folders."""
    try:
        present = set(os.listdir(root))
    except FileNotFoundError:
        raise DatasetError(f"{label}: the image folder {root} does not exist") from None
    keep = np.zeros(len(names), dtype=bool)
    files = []
    for i, n in enumerate(names):
        if n in present or (os.sep in n or "/" in n) and os.path.isfile(os.path.join(root, n)):
            keep[i] = True
            files.append(os.path.join(root, n))
        else:
            skips.add(label, line_no[i], f"image {n!r} not found in {root}")
    return files, keep


def read_competition(label, strict: bool = False, images: str | None = None) -> LandmarkTable:
    """The competition's ``landmarks.csv``: a TSV with header ``file_name, Point_0_X, Point_0_Y, ...``
    (integer or float values); images under ``images/`` beside it."""
    label = os.path.abspath(os.fspath(label))
    names, vals, line_no, _, skips, _ = _parse_table(label, None, True, strict, _competition_names)
    return _finish(names, vals, line_no, label, _image_root(label, images), skips, "competition")


def read_csv(label, strict: bool = False, images: str | None = None, header: bool | None = None) -> LandmarkTable:
    """A plain CSV: file name, then x0, y0, x1, y1, ... (comma or tab; header or not)."""
    label = os.path.abspath(os.fspath(label))
    names, vals, line_no, _, skips, _ = _parse_table(label, None, header, strict)
    return _finish(names, vals, line_no, label, _image_root(label, images), skips, "csv")


def _finish(names, vals, line_no, label, root, skips, fmt):
    files, keep = _resolve_images(names, line_no, root, label, skips)
    pts = vals[keep].reshape(int(keep.sum()), vals.shape[1] // 2, 2)
    return LandmarkTable(files, np.ascontiguousarray(pts, dtype=np.float64), skips.items, root, fmt, label)


# ------------------------------------------------------------------------------------------- .pts

_PTS_WRAPPED = re.compile(r"^\s*version\s*:.*?n_points\s*:\s*(\d+)\s*\{(.*)\}\s*$", re.S)


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
        bad = next((i, r) for i, r in enumerate(rows) if not all(_is_number(v) for v in r))
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
    skips = _Skips(strict)
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
        return LandmarkTable([], np.zeros((0, 0, 2)), skips.items, root, "pts", folder)
    ks = np.array([len(f[1]) for f in found])
    vals, freq = np.unique(ks, return_counts=True)
    k = int(vals[np.argmax(freq)])
    files, pts = [], []
    for img, p, src in found:
        if len(p) != k:
            skips.add(src, None, f"{len(p)} points, the other files have {k}")
            continue
        files.append(img)
        pts.append(p)
    return LandmarkTable(files, np.stack(pts) if pts else np.zeros((0, k, 2)), skips.items, root, "pts", folder)


# ------------------------------------------------------------------------------------ test points

def read_test_points(path) -> list:
    """The competition's ``test_points.csv`` (TSV: ``file_name``, ``point_index_list`` as a Python
    list string) -> ``[(file_name, [indices])]`` in file order. ``path`` may be the folder holding it."""
    import pandas as pd
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "test_points.csv")
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: test points file not found")
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    cols = list(frame.columns)
    if cols[:2] != ["file_name", "point_index_list"]:
        raise DatasetError(f"{path}: line 1 (header): expected columns file_name, point_index_list, got {cols}")
    out = []
    for i, (name, lst) in enumerate(zip(frame["file_name"], frame["point_index_list"])):
        try:
            idx = ast.literal_eval(lst.strip())
            if not isinstance(idx, (list, tuple)) or not all(isinstance(v, int) and v >= 0 for v in idx):
                raise ValueError
        except (ValueError, SyntaxError):
            raise DatasetError(f"{path}: line {i + 2}: file {name!r}: field point_index_list {lst!r} is not a "
                               "list of non-negative integers") from None
        out.append((name.strip(), [int(v) for v in idx]))
    return out


# -------------------------------------------------------------------------------- image checking

def _probe(path):
    from augkit.io import ImageReadError, read_image
    try:
        img = read_image(path)
    except ImageReadError as e:
        return None, str(e)
    return (img.shape[1], img.shape[0]), None


def _header_size(path):
    try:
        from PIL import Image
        with Image.open(path) as im:
            return im.size, None
    except Exception as e:  # noqa: BLE001 - any failure means "cannot read"
        return None, f"{path}: not a readable image ({type(e).__name__})"


def verify_images(table: LandmarkTable, strict: bool = False, decode: bool = True, threads: int | None = None,
                  progress: bool = False) -> LandmarkTable:
    """Decode every image (``decode=False``: read the header only), record sizes, and drop rows
    whose image is corrupt (counted in ``skipped``; ``strict`` raises). Returns a new table."""
    skips = _Skips(strict)
    skips.items = list(table.skipped)
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
                skips.add(table.files[i], None, why)
            else:
                sizes[i] = size
    out = table.subset(np.flatnonzero(keep))
    out.sizes = sizes[keep]
    out.skipped = skips.items
    if len(out) == 0:
        raise DatasetError(f"{table.source}: the dataset is empty (no readable images)")
    return out
