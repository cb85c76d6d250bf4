"""Landmark dataset readers: the competition layout, plain CSV and 300-W ``.pts`` folders.

Every reader returns a :class:`LandmarkTable`: absolute image paths (one numpy array of
fixed-width strings), an ``(N, K, 2)`` float32 array of 0-based OpenCV pixel coordinates, and the
rows it skipped (file, row, reason). Bad rows are skipped and counted by default; ``strict=True``
makes the first one an error that names the file, the row (the line number in the label file,
1-based, the header being line 1) and the field.

Label files are parsed in blocks of lines straight into one float32 array (see "delimited text"
below): 400k rows x 971 points never exist as a frame or a float64 copy, the peak stays under
twice the points array, and forked DataLoader workers share the table's pages instead of copying
per-row objects. Image files are checked for existence here; decoding them (corrupt files) and
the sanity of the coordinates against the image size are :func:`verify_images`' job.

Label rows that are skipped (reasons in ``skipped``): a wrong number of fields, a value that is
empty, ``NaN`` or not a finite number, a file name already seen on an earlier line (the first row
is kept: "duplicate file name (also on line N)"), an image that does not exist; in
:func:`verify_images`, an image that cannot be read and labels far outside the image (more than
:data:`OUTSIDE_MARGIN` of the image's width or height beyond its border). A label file that is
not UTF-8 is an error naming the line and the byte (re-save it as UTF-8).

numpy only (image headers through augkit.io.image_size): no pandas, no torch.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import itertools
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LandmarkTable", "DatasetError", "read_dataset", "read_competition", "read_csv", "read_pts",
           "read_test_points", "detect_format", "verify_images", "FORMATS", "IMAGE_EXTENSIONS", "OUTSIDE_MARGIN"]

FORMATS = ("competition", "csv", "pts")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: labels further than this fraction of the image's width (x) or height (y) outside the image are
#: skipped by :func:`verify_images` (a 200 px wide image accepts x in [-100, 300]).
OUTSIDE_MARGIN = 0.5


class DatasetError(ValueError):
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
        sizes: optional ``(N, 2)`` int array of image (width, height), filled by :func:`verify_images`.
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

    def subset(self, index) -> "LandmarkTable":
        """The rows ``index`` (an int array or a boolean mask); ``skipped`` is shared."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        pick = (lambda a: None if a is None else a[index])
        return dataclasses.replace(self, files=self.files[index], points=self.points[index], sizes=pick(self.sizes),
                                   lines=pick(self.lines))

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


# ---------------------------------------------------------------------------------------- detection

def detect_format(path) -> str:
    """Which reader fits ``path``: "competition", "csv" or "pts"."""
    path = os.fspath(path)
    if os.path.isfile(path):
        if path.lower().endswith(".pts"):
            return "pts"
        with open(path, "rb") as f:
            head = f.readline().decode("utf-8", "replace")
        return "competition" if re.search(r"Point_M?[01]_X", head, re.I) else "csv"
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
#
# The label file is read in blocks of whole lines (``_BLOCK_BYTES``) and parsed straight into one
# preallocated float32 (rows, 2K) buffer: the only per-row Python objects are the file names. A
# block whose every value is a plain decimal (``-12``, ``3.25``) is converted by a vectorised numpy
# parser; any other block goes through numpy's string conversion, and a block with a bad value is
# re-read line by line to name the row and the field.

_BLOCK_BYTES = 2 << 20
_P10 = 10.0 ** np.arange(23)
_IS_DIGIT = np.zeros(256, dtype=bool)
_IS_DIGIT[48:58] = True
_NAN_WORDS = {"nan", "-nan", "+nan"}
_LOG = logging.getLogger(__name__)


def _count_lines(path: str) -> int:
    """Newlines in the file (+1 for a last line without one): the row capacity to preallocate."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def _line_blocks(f, first: bytes = b""):
    """Blocks of complete lines from the binary file ``f`` (``first``: bytes already read), each a
    list of lines without terminators (a trailing ``\\r`` is stripped later)."""
    rest = first
    while True:
        chunk = f.read(_BLOCK_BYTES)
        if not chunk:
            if rest:
                yield rest.split(b"\n")
            return
        chunk = rest + chunk
        cut = chunk.rfind(b"\n")
        if cut < 0:
            rest = chunk
            continue
        rest = chunk[cut + 1:]
        yield chunk[:cut].split(b"\n")


def _parse_plain(values: bytes, sep: int, n: int):
    """The ``n`` numbers of ``values`` (fields separated by byte ``sep``) as float64, vectorised, when
    every field is ``-?digits[.digits]`` with at most 15 digits; None otherwise (the caller falls
    back to numpy's string conversion). Integer digits are summed exactly in float64, then divided
    by the power of ten of the fraction: the same correctly rounded value as ``float(text)``."""
    b = np.frombuffer(values, dtype=np.uint8)
    is_sep = b == sep
    ends = np.flatnonzero(is_sep)
    if len(ends) != n - 1:
        return None
    ends = np.append(ends, len(b))
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    signed_int = _IS_DIGIT.copy()
    signed_int[[sep, 45]] = True       # digits, this separator, minus signs
    if signed_int[b].all():
        return _parse_ints(b, starts, ends, n)
    is_digit = _IS_DIGIT[b]
    other = ~(is_digit | is_sep)
    neg = dot_field = frac = None
    if other.any():
        minus, dot = b == 45, b == 46
        if (other & ~(minus | dot)).any():
            return None
        m_pos = np.flatnonzero(minus)
        if len(m_pos):
            neg = np.searchsorted(ends, m_pos)
            if (starts[neg] != m_pos).any():
                return None
        d_pos = np.flatnonzero(dot)
        if len(d_pos):
            dot_field = np.searchsorted(ends, d_pos)
            if (np.diff(dot_field) == 0).any():
                return None
            frac = ends[dot_field] - d_pos - 1
    csum = np.cumsum(is_digit, dtype=np.int32)
    digits_to_end = csum[ends - 1]
    n_digits = digits_to_end - np.where(starts > 0, csum[np.maximum(starts - 1, 0)], 0)
    if n_digits.min() < 1 or n_digits.max() > 15:
        return None
    field_of = np.repeat(np.arange(n, dtype=np.int32), ends - starts + 1)[:len(b)]
    d_at = np.flatnonzero(is_digit)
    f_at = field_of[d_at]
    place = digits_to_end[f_at] - csum[d_at]
    vals = np.bincount(f_at, weights=(b[d_at] - 48) * _P10[place], minlength=n)
    if dot_field is not None:
        vals[dot_field] /= _P10[frac]
    if neg is not None:
        vals[neg] = -vals[neg]
    return vals


def _parse_ints(b: np.ndarray, starts: np.ndarray, ends: np.ndarray, n: int):
    """The fast case of :func:`_parse_plain`: every field ``-?digits`` (``b`` holds only digits,
    separators and minus signs). Fields are grouped by length and summed digit by digit."""
    neg = b[np.minimum(starts, len(b) - 1)] == 45
    if int(neg.sum()) != int(np.count_nonzero(b == 45)):
        return None                    # a minus sign inside a field
    first = starts + neg
    length = ends - first
    if length.min() < 1 or length.max() > 15:
        return None
    vals = np.empty(n, dtype=np.float64)
    for size in range(1, int(length.max()) + 1):
        sel = np.flatnonzero(length == size)
        if not len(sel):
            continue
        at = first[sel]
        acc = b[at].astype(np.int64) - 48
        for t in range(1, size):
            acc = acc * 10 + (b[at + t] - 48)
        vals[sel] = acc
    vals[neg] = -vals[neg]
    return vals


def _field_problem(token: bytes) -> str | None:
    """Why one value field is unusable ("is empty", "is NaN", "'x' is not a finite number"), or None."""
    text = token.decode("utf-8", "replace").strip()
    if not text:
        return "is empty"
    if text.lower() in _NAN_WORDS:
        return "is NaN"
    try:
        ok = np.isfinite(float(text))
    except ValueError:
        ok = False
    return None if ok else f"{text!r} is not a finite number"


def _split_header(cell: str) -> str:
    """'Point_M12_X' -> 'Point_M{i}_X': the naming of a column with its last number taken out."""
    return re.sub(r"\d+(?!.*\d)", "{i}", cell)


def _check_header(label: str, columns: list, line_no: int = 1) -> str:
    """Check that the columns after the first come as x, y pairs in order; return the naming seen
    (e.g. ``Point_M{i}_X / Point_M{i}_Y``). Accepted: any name for the file column, then for each
    point an x column and a y column whose names differ only in that letter (``Point_M0_X`` /
    ``Point_M0_Y``, ``x0`` / ``y0``, ``X_0`` / ``Y_0``, ``nose_x`` / ``nose_y``); numbered names must
    count up by one from 0 or 1."""
    def bad(col: int, expected: str):
        raise DatasetError(f"{label}: line {line_no} (header): column {col + 1} is {columns[col]!r}, expected "
                           f"{expected} (after the file name column, x, y column pairs in order)")
    templates, numbers, letters = set(), [], []
    for j in range(1, len(columns), 2):
        cx, cy = columns[j], columns[j + 1]
        axis = max(cx.rfind("x"), cx.rfind("X"))
        if axis < 0:
            bad(j, "an x column (e.g. 'Point_0_X' or 'x0')")
        want = cx[:axis] + ("y" if cx[axis] == "x" else "Y") + cx[axis + 1:]
        if cy.lower() != want.lower():
            bad(j + 1, repr(want))
        marked = cx[:axis] + "\0" + cx[axis + 1:]
        found = re.findall(r"\d+", marked)
        numbers.append(int(found[-1]) if found else None)
        templates.add(re.sub(r"\d+(?=\D*$)", "{i}", marked) if found else marked)
        letters.append((cx[axis], cy[axis]))
    if len(templates) == 1 and None not in numbers:
        template = templates.pop()
        expected = list(range(numbers[0], numbers[0] + len(numbers)))
        if numbers[0] not in (0, 1) or numbers != expected:
            j = next((i for i, (a, b) in enumerate(zip(numbers, expected)) if a != b), 0)
            if numbers[0] not in (0, 1):
                expected[0] = 0
            bad(1 + 2 * j, repr(template.replace("{i}", str(expected[j])).replace("\0", letters[j][0])))
        return f"{template.replace(chr(0), letters[0][0])} / {template.replace(chr(0), letters[0][1])}"
    more = ", ..." if len(columns) > 5 else ""
    return "named x, y pairs (" + ", ".join(columns[1:5]) + more + ")"


def _first_line(f, label: str):
    """(the first non-blank line decoded, its line number, the bytes read after it)."""
    head = f.read(1 << 16)
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    line_no = 0
    while True:
        cut = head.find(b"\n")
        while cut < 0:
            more = f.read(1 << 20)
            if not more:
                cut = len(head)
                break
            head += more
            cut = head.find(b"\n")
        line, head = head[:cut].rstrip(b"\r"), head[cut + 1:]
        line_no += 1
        if line.strip():
            return _decode(line, label, line_no), line_no, head
        if not head:
            more = f.read(1 << 16)
            if not more:
                raise DatasetError(f"{label}: the file is empty")
            head = more


def _decode(raw: bytes, label: str, line_no: int) -> str:
    """``raw`` as UTF-8; any other encoding is an error naming the file, the line and the byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{label}: line {line_no}: byte 0x{raw[e.start]:02x} at character {e.start + 1} is not "
                           "UTF-8 text; expected a UTF-8 label file (re-save it as UTF-8, e.g. "
                           "'iconv -f cp1252 -t utf-8')") from None


class _Parsed:
    """What :func:`_parse_table` returns: names (list of str), values (N, 2K) float32 (a view of the
    preallocated buffer), line numbers (int64), column names, naming description, skips."""

    def __init__(self, names, values, line_no, columns, naming, skips):
        self.names, self.values, self.line_no = names, values, line_no
        self.columns, self.naming, self.skips = columns, naming, skips


def _parse_table(label: str, header: bool | None, strict: bool) -> _Parsed:
    """Parse a delimited label file (tab or comma, detected on the first line): a file-name column,
    then x, y pairs. A header is detected when most of the first line's value fields are not numbers
    (or forced with ``header``); without one, the expected field count is the most common one in the
    first block of lines."""
    skips = _Skips(strict)
    try:
        f = open(label, "rb")
    except FileNotFoundError:
        raise DatasetError(f"{label}: label file not found") from None
    with f:
        first, first_no, rest = _first_line(f, label)
        sep = "\t" if first.count("\t") >= max(1, first.count(",")) else ","
        cells = [c.strip() for c in first.split(sep)]
        if header is None:
            values = cells[1:]
            header = len(cells) < 2 or sum(not _is_number(v) for v in values) > len(values) // 2
        blocks = _line_blocks(f, rest if header else (first.encode() + b"\n" + rest))
        start_no = first_no + 1 if header else first_no
        expected, pending = len(cells), None
        if not header:
            pending = next(blocks, [])
            counts = [ln.count(sep.encode()) + 1 for ln in pending if ln.strip(b"\r")]
            vals, freq = np.unique(counts or [len(cells)], return_counts=True)
            expected = int(vals[np.argmax(freq)])
        if expected < 3 or (expected - 1) % 2:
            raise DatasetError(f"{label}: line {first_no}: expected a file name then x, y pairs, got {expected} fields "
                               f"({expected - 1} values: {'odd' if (expected - 1) % 2 else 'too few'})")
        if header:
            columns = cells
            naming = _check_header(label, columns, first_no)
        else:
            k = (expected - 1) // 2
            columns = ["file_name"] + [f"{a}{i}" for i in range(k) for a in ("x", "y")]
            naming = "no header (file name, then x, y pairs)"
        _LOG.info("%s: header naming %s, %d points", label, naming, (expected - 1) // 2)
        capacity = _count_lines(label)
        out = np.empty((capacity, expected - 1), dtype=np.float32)
        names: list = []
        line_nos = np.empty(capacity, dtype=np.int64)
        n = 0
        block_iter = blocks if pending is None else itertools.chain([pending], blocks)
        for lines in block_iter:
            n = _parse_block(lines, start_no, sep.encode(), expected, columns, label, skips, out, names, line_nos, n)
            start_no += len(lines)
    return _Parsed(names, out[:n], line_nos[:n], columns, naming, skips)


def _parse_block(lines, start_no, sep: bytes, expected: int, columns, label, skips, out, names, line_nos, n) -> int:
    """Parse one block of lines into ``out[n:]``; append names and line numbers; return the new n."""
    rests, block_names, block_nos = [], [], []
    for i, ln in enumerate(lines):
        if ln.endswith(b"\r"):
            ln = ln[:-1]
        if not ln:
            continue
        no = start_no + i
        fields = ln.count(sep) + 1
        name, _, rest = ln.partition(sep)
        if fields != expected:
            skips.add(label, no, f"file {name.decode('utf-8', 'replace').strip()!r}: {fields - 1} values, expected "
                                 f"{expected - 1} ({(expected - 1) // 2} x, y pairs)")
            continue
        block_names.append(_decode(name, label, no).strip())
        rests.append(rest)
        block_nos.append(no)
    if not rests:
        return n
    width = expected - 1
    vals = _parse_plain(sep.join(rests), sep[0], len(rests) * width)
    if vals is None:
        try:
            vals = np.array(sep.join(rests).split(sep), dtype=np.float64)
        except ValueError:
            vals = None
    if vals is None:
        rows = np.full((len(rests), width), np.nan)
        for r, rest in enumerate(rests):
            try:
                rows[r] = np.array(rest.split(sep), dtype=np.float64)
            except ValueError:
                pass
    else:
        rows = vals.reshape(len(rests), width)
    bad = ~np.isfinite(rows).all(axis=1)
    if bad.any():
        for r in np.flatnonzero(bad):
            tokens = rests[r].split(sep)
            j, why = next(((j, w) for j, t in enumerate(tokens) if (w := _field_problem(t))),
                          (0, "cannot be read as numbers"))
            skips.add(label, block_nos[r], f"file {block_names[r]!r}: field {columns[j + 1]} {why}")
        keep = np.flatnonzero(~bad)
        rows = rows[keep]
        block_names = [block_names[i] for i in keep]
        block_nos = [block_nos[i] for i in keep]
    m = len(block_names)
    out[n:n + m] = rows
    line_nos[n:n + m] = block_nos
    names.extend(block_names)
    return n + m


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


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
    return _finish(_parse_table(label, None, strict), label, _image_root(label, images), "competition")


def read_csv(label, strict: bool = False, images: str | None = None, header: bool | None = None) -> LandmarkTable:
    """A plain CSV: file name, then x0, y0, x1, y1, ... (comma or tab; header or not)."""
    label = os.path.abspath(os.fspath(label))
    return _finish(_parse_table(label, header, strict), label, _image_root(label, images), "csv")


def _finish(parsed: _Parsed, label, root, fmt) -> LandmarkTable:
    keep = _resolve_images(parsed.names, parsed.line_no, root, label, parsed.skips)
    values = _compact(parsed.values, keep)
    files = np.array([os.path.join(root, n) for n, k in zip(parsed.names, keep) if k], dtype=str)
    skipped = sorted(parsed.skips.items, key=lambda s: s["row"] if s["row"] is not None else -1)
    table = LandmarkTable(files, values.reshape(len(values), values.shape[1] // 2, 2), skipped, root, fmt, label,
                          lines=_compact(parsed.line_no, keep), naming=parsed.naming)
    return table


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
    """((width, height), None) of the decoded image, or (None, why) without the path."""
    from augkit.io import ImageReadError, read_image
    try:
        img = read_image(path)
    except ImageReadError as e:
        return None, _without_path(str(e), path)
    return (img.shape[1], img.shape[0]), None


def _without_path(message: str, path) -> str:
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


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
        out = ((p < -margin * wh) | (p > (1 + margin) * wh)).any(axis=2)
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
    skips = _Skips(strict)
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
