"""The fast block parser of delimited label files (tab or comma): a file-name column, then x, y
pairs, read in blocks of whole lines straight into one preallocated float32 array.

400k rows x 971 points never exist as a frame or a float64 copy: the peak stays under twice the
points array, and the only per-row Python objects are the file names. A label file that is not
UTF-8 is an error naming the line and the byte. The format readers (``competition``, ``csv``) call
:func:`parse_table`; it knows nothing of images.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from typing import cast

import numpy as np
import numpy.typing as npt

from .table import DatasetError, Skips

__all__ = ["F32_MAX", "Parsed", "count_lines", "decode_line", "is_number", "line_blocks", "parse_table"]

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


def count_lines(path: str) -> int:
    """Newlines in the file (+1 for a last line without one): the row capacity to preallocate."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def line_blocks(f, first: bytes = b""):
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
    # with weights, bincount gives float64 (numpy's stubs say intp whatever the weights)
    vals = cast(npt.NDArray[np.float64], np.bincount(f_at, weights=(b[d_at] - 48) * _P10[place], minlength=n))
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


#: the largest magnitude a label value may have: the tables hold float32
F32_MAX = float(np.finfo(np.float32).max)


def _field_problem(token: bytes) -> str | None:
    """Why one value field is unusable ("is empty", "is NaN", "'x' is not a finite number"), or None."""
    text = token.decode("utf-8", "replace").strip()
    if not text:
        return "is empty"
    if text.lower() in _NAN_WORDS:
        return "is NaN"
    try:
        value = float(text)
    except ValueError:
        return f"{text!r} is not a finite number"
    if not np.isfinite(value):
        return f"{text!r} is not a finite number"
    if abs(value) > F32_MAX:
        return f"{text!r} is beyond the float32 range the labels are held in (±{F32_MAX:.3g})"
    return None


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
        nums = [k for k in numbers if k is not None]   # all of them
        template = templates.pop()
        expected = list(range(nums[0], nums[0] + len(nums)))
        if nums[0] not in (0, 1) or nums != expected:
            j = next((i for i, (a, b) in enumerate(zip(nums, expected)) if a != b), 0)
            if nums[0] not in (0, 1):
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
            return decode_line(line, label, line_no), line_no, head
        if not head:
            more = f.read(1 << 16)
            if not more:
                raise DatasetError(f"{label}: the file is empty")
            head = more


def decode_line(raw: bytes, label: str, line_no: int) -> str:
    """``raw`` as UTF-8; any other encoding is an error naming the file, the line and the byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{label}: line {line_no}: byte 0x{raw[e.start]:02x} at character {e.start + 1} is not "
                           "UTF-8 text; expected a UTF-8 label file (re-save it as UTF-8, e.g. "
                           "'iconv -f cp1252 -t utf-8')") from None


class Parsed:
    """What :func:`parse_table` returns: names (list of str), values (N, 2K) float32 (a view of the
    preallocated buffer), line numbers (int64), column names, naming description, skips."""

    def __init__(self, names, values, line_no, columns, naming, skips):
        self.names, self.values, self.line_no = names, values, line_no
        self.columns, self.naming, self.skips = columns, naming, skips


def parse_table(label: str, header: bool | None, strict: bool) -> Parsed:
    """Parse a delimited label file (tab or comma, detected on the first line): a file-name column,
    then x, y pairs. A header is detected when most of the first line's value fields are not numbers
    (or forced with ``header``); without one, the expected field count is the most common one in the
    first block of lines."""
    skips = Skips(strict)
    if not os.path.isfile(label):
        raise DatasetError(f"{label}: label file not found")
    with open(label, "rb") as f:
        first, first_no, rest = _first_line(f, label)
        sep = "\t" if first.count("\t") >= max(1, first.count(",")) else ","
        cells = [c.strip() for c in first.split(sep)]
        if header is None:
            values = cells[1:]
            header = len(cells) < 2 or sum(not is_number(v) for v in values) > len(values) // 2
        blocks = line_blocks(f, rest if header else (first.encode() + b"\n" + rest))
        start_no = first_no + 1 if header else first_no
        expected = len(cells)
        pending: list[bytes] | None = None
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
        capacity = count_lines(label)
        out = np.empty((capacity, expected - 1), dtype=np.float32)
        names: list = []
        line_nos = np.empty(capacity, dtype=np.int64)
        n = 0
        block_iter = blocks if pending is None else itertools.chain([pending], blocks)
        for lines in block_iter:
            n = _parse_block(lines, start_no, sep.encode(), expected, columns, label, skips, out, names, line_nos, n)
            start_no += len(lines)
    return Parsed(names, out[:n], line_nos[:n], columns, naming, skips)


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
        block_names.append(decode_line(name, label, no).strip())
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
    with np.errstate(invalid="ignore"):  # a value float32 cannot hold would become inf: skipped like NaN
        bad = ~(np.isfinite(rows) & (np.abs(rows) <= F32_MAX)).all(axis=1)
    if bad.any():
        for row in np.flatnonzero(bad):
            tokens = rests[row].split(sep)
            j, why = next(((j, w) for j, t in enumerate(tokens) if (w := _field_problem(t))),
                          (0, "cannot be read as numbers"))
            skips.add(label, block_nos[row], f"file {block_names[row]!r}: field {columns[j + 1]} {why}")
        keep = np.flatnonzero(~bad)
        rows = rows[keep]
        block_names = [block_names[i] for i in keep]
        block_nos = [block_nos[i] for i in keep]
    m = len(block_names)
    out[n:n + m] = rows
    line_nos[n:n + m] = block_nos
    names.extend(block_names)
    return n + m


def is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False

