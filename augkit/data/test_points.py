"""The competition's ``test_points.csv``: which points to predict for each test image.

A tab-separated file (TSV, whatever its extension says): a header line ``file_name<TAB>
point_index_list``, then one line per test image, its file name and a Python-style list of point
indices (``[0, 5, 17]``). The file is read as exactly what it is, a TSV: no CSV quoting applies
to the names, so a name reads back exactly as written (quotes, spaces and any UTF-8 text
included; only the line ending is removed). Blank lines are skipped. Anything else is a
:class:`DatasetError` of one line naming the file, the line and what was expected.
"""

from __future__ import annotations

import ast
import os

from .parser import decode_line
from .table import DatasetError

__all__ = ["TEST_POINTS_COLUMNS", "read_test_points"]

TEST_POINTS_COLUMNS = ("file_name", "point_index_list")
_LIST_CHARS = str.maketrans("", "", "0123456789, \t")   # what a plain "[1, 2, 3]" holds inside
_EXPECTED = "a header line 'file_name<TAB>point_index_list', then one line per test image"


def read_test_points(path) -> list:
    """``test_points.csv`` -> ``[(file_name, [indices])]`` in file order.

    Args:
        path: the file, or the folder holding ``test_points.csv``.

    Raises:
        DatasetError: a missing, empty, header-only or non-UTF-8 file, a wrong header, a line with
            the wrong number of fields, an empty file name or a list that is not one of
            non-negative integers; the message names the file and the line.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "test_points.csv")
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: test points file not found")
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = [(no, decode_line(raw[:-1] if raw.endswith(b"\r") else raw, path, no))
             for no, raw in enumerate(data.split(b"\n"), start=1)]
    lines = [(no, text) for no, text in lines if text.strip()]
    if not lines:
        raise DatasetError(f"{path}: the file is empty; expected {_EXPECTED}")
    (head_no, head), rows = lines[0], lines[1:]
    columns = [c.strip() for c in head.split("\t")]
    if tuple(columns[:2]) != TEST_POINTS_COLUMNS:
        raise DatasetError(f"{path}: line {head_no} (header): expected the tab-separated columns file_name, "
                           f"point_index_list, got {columns}")
    if not rows:
        raise DatasetError(f"{path}: no rows: the file has only its header (line {head_no}); expected one line "
                           "per test image after it (file_name<TAB>point_index_list)")
    return [_row(path, no, text, len(columns)) for no, text in rows]


def _row(path: str, no: int, text: str, width: int) -> tuple:
    """One line -> (file name exactly as written, [indices])."""
    fields = text.split("\t")
    if len(fields) != width:
        raise DatasetError(f"{path}: line {no}: {len(fields)} tab-separated fields, expected {width} "
                           f"({', '.join(TEST_POINTS_COLUMNS)}{', ...' if width > 2 else ''}); "
                           f"the line begins {text[:60]!r}")
    name, listed = fields[0], fields[1]
    if not name.strip():
        raise DatasetError(f"{path}: line {no}: field file_name is empty; expected the test image's file name")
    return name, _indices(path, no, name, listed)


def _indices(path: str, no: int, name: str, listed: str) -> list:
    """The point indices of a ``point_index_list`` field (a list or tuple of non-negative ints; a
    field wrapped in double quotes, as a CSV writer may leave it, is unwrapped)."""
    text = listed.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    plain = _plain_list(text)
    if plain is not None:
        return plain
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = None
    if not isinstance(value, (list, tuple)) or not all(type(v) is int and v >= 0 for v in value):
        raise DatasetError(f"{path}: line {no}: file {name!r}: field point_index_list {listed!r} is not a list of "
                           "non-negative integers (e.g. [0, 5, 17])")
    return list(value)


def _plain_list(text: str):
    """The fast path: ``[1, 2, 3]`` (digits, commas and blanks only) as ints; None for anything
    else (then ``ast.literal_eval`` decides)."""
    if not (text.startswith("[") and text.endswith("]")) or text[1:-1].translate(_LIST_CHARS):
        return None
    parts = text[1:-1].split(",")
    if not parts[-1].strip():
        parts.pop()                        # "[]", "[ ]" and a trailing comma
    try:
        return [int(p) for p in parts]
    except ValueError:                     # an empty field ("[1,,2]") or "1 2"
        return None
