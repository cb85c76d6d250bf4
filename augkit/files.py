"""Files at the bottom of the stack: YAML/JSON reading and atomic writes.

Imports nothing of augkit, so every module (schemes, config, the data layer, train, tta) can
stand on it without an import circle. ``augkit.config`` re-exports all of it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from typing import IO, Any

__all__ = [
    "OutputError",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable",
    "dump_yaml",
    "read_yaml",
]


def read_yaml(path) -> object:
    """Parse a YAML (or JSON, a subset of YAML) file; errors name the file and the line."""
    import yaml
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML/JSON: {e}") from None


def dump_yaml(data) -> str:
    import yaml
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


class OutputError(OSError):
    """A file could not be written; the message names the file the user asked for, not a temporary."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _target_mode(path: str) -> int:
    """An existing file keeps its mode; a new one gets 0o666 less the umask, as ``open`` would give."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _explain(path: str, err: OSError) -> OutputError:
    reasons: dict[int | None, str] = {
        errno.ENOSPC: "no space left on the device", errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied", errno.EPERM: "permission denied",
        errno.EDQUOT: "disk quota exceeded"}
    reason = reasons.get(err.errno, err.strerror or str(err))
    return OutputError(err.errno, f"cannot write {path}: {reason}")


def check_writable(path) -> None:
    """Fail now, before any long compute, if ``path`` could not be written atomically.

    Creates the folder if needed and probes it with a temporary file that is removed at once.

    Raises:
        OutputError: naming ``path`` and the reason (read-only folder, permission, full disk, ...).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise OutputError(errno.EISDIR, f"cannot write {path}: it is a folder, expected a file name")
    fd, tmp = _temp_beside(path)
    os.close(fd)
    os.unlink(tmp)


def _temp_beside(path: str) -> tuple[int, str]:
    """A new hidden temporary file in ``path``'s folder (made if needed): ``(fd, name)``.

    Raises:
        OutputError: naming ``path`` when the folder cannot be made or written.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        return tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    except OSError as e:
        raise _explain(path, e) from None


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None):
    """Open a temporary file beside ``path`` for streaming writes; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left as it was. The final file
    gets the mode an ordinary ``open`` would give (umask respected; an existing file keeps its mode).

    Raises:
        OutputError: the file could not be written (full disk, read-only folder, ...), naming ``path``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    fd, tmp = _temp_beside(path)
    f: IO[Any]
    try:
        if mode == "wb":
            f = os.fdopen(fd, "wb")
        else:
            f = os.fdopen(fd, "w", encoding=encoding, newline=newline)
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _target_mode(path))
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        if isinstance(e, OutputError):
            raise
        raise _explain(path, e) from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def atomic_write_bytes(path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename: a crash never leaves half a file."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
