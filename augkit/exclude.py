"""Lists of images to leave out of training: a CSV with a ``file_name`` column (``audit.csv`` of
``augkit audit``, or any list). With a ``suspect`` column only the rows marked true count."""

from __future__ import annotations

import csv
import os

from augkit.errors import InputError

__all__ = ["read_exclusions", "TRUE_WORDS"]

TRUE_WORDS = {"1", "true", "yes", "y", "t"}


def read_exclusions(path: str) -> set[str]:
    """The file names a CSV lists (base names: they match images in any folder of a dataset).

    Errors name the file and line: not UTF-8, no ``file_name`` column, a row without a name, an
    unreadable ``suspect`` value.
    """
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise InputError(f"{path}: the exclusion list is empty; expected a CSV with a file_name column")
            cols = [h.strip().lower() for h in header]
            if "file_name" not in cols:
                raise InputError(f"{path}: line 1 has no file_name column (columns: {', '.join(header)}); "
                                 "expected a CSV such as augkit audit's audit.csv")
            name_at, flag_at = cols.index("file_name"), cols.index("suspect") if "suspect" in cols else None
            names = set()
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) <= max(name_at, flag_at or 0) or not row[name_at].strip():
                    raise InputError(f"{path}: line {line} has no file_name value")
                if flag_at is not None:
                    flag = row[flag_at].strip().lower()
                    if flag not in TRUE_WORDS | {"0", "false", "no", "n", "f", ""}:
                        raise InputError(f"{path}: line {line}: suspect is {row[flag_at]!r}, expected true or false")
                    if flag not in TRUE_WORDS:
                        continue
                names.add(os.path.basename(row[name_at].strip()))
            return names
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); expected a CSV file") from None
