"""Files at the bottom of the stack: YAML/JSON reading (bounded) and atomic writes.

Every YAML and JSON file augkit reads goes through :func:`read_yaml` / :func:`read_json`, which
refuse, in bounded time and memory and with one line naming the file: a file over a size limit,
nesting deeper than :data:`MAX_DEPTH`, and YAML aliases that would expand to more than
:data:`MAX_NODES` values (the "billion laughs" file: a few hundred bytes that a program walking the
result would expand to billions of items).

Imports only :mod:`augkit.errors` and :mod:`augkit.signals` (which import nothing of augkit), so
every module (schemes, config, the data layer, train, tta) can stand on it without an import circle.
"""

from __future__ import annotations

from augkit.errors import AugkitError, InputError
from augkit.signals import deferred
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
    "read_json",
    "parse_json",
    "read_yaml",
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_YAML_BYTES",
    "MAX_JSON_BYTES",
]

MAX_DEPTH = 64                 # nesting of lists and mappings (augkit's own files use fewer than 8)
MAX_NODES = 2_000_000          # values in a YAML document once its aliases are expanded
MAX_YAML_BYTES = 16 << 20      # pipelines, TTA specs, schemes, option files: kilobytes to a few MB
MAX_JSON_BYTES = 1 << 30       # run-folder JSON (split.json lists every image: ~50 bytes an image)


def _check_size(path, limit: int) -> None:
    size = os.path.getsize(path)
    if size > limit:
        raise InputError(f"{path}: {size:,} bytes, more than the {limit:,} this kind of file may have")


def read_yaml(path) -> object:
    """Parse a YAML (or JSON, a subset of YAML) file; errors name the file and the line. Refused:
    more than :data:`MAX_YAML_BYTES`, nesting deeper than :data:`MAX_DEPTH`, more than
    :data:`MAX_NODES` values once aliases are expanded (checked before anything is built)."""
    import yaml
    try:
        _check_size(path, MAX_YAML_BYTES)
        with open(path, encoding="utf-8") as f:
            loader = _bounded_loader()(f)
            try:
                node = loader.get_single_node()
                if node is None:
                    return None
                _expanded_size(node, path)
                return loader.construct_document(node)
            finally:
                loader.dispose()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML/JSON: {e}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file") from None


_LOADER: list = []


def _bounded_loader():
    """PyYAML's safe loader, refusing nesting deeper than MAX_DEPTH while it composes (built once)."""
    if _LOADER:
        return _LOADER[0]
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent, index):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"nested deeper than {MAX_DEPTH} levels (line {mark.line + 1})")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    _LOADER.append(BoundedLoader)
    return BoundedLoader


def _expanded_size(root, path) -> int:
    """Values in the composed YAML ``root`` with every alias expanded, counted over the node graph
    (each node once, memoised): refused over MAX_NODES, deeper than MAX_DEPTH once expanded (a
    chain of aliases nests without nesting in the text), and a node that contains itself."""
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    stack: list = [(root, False)]
    open_: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_.discard(key)
            children = _children(node)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            depths[key] = 1 + max((depths[id(c)] for c in children), default=0)
            if sizes[key] > MAX_NODES:
                raise InputError(f"{path}: its aliases expand to more than {MAX_NODES:,} values (line "
                                 f"{node.start_mark.line + 1}); write the values out instead")
            if depths[key] > MAX_DEPTH:
                raise InputError(f"{path}: its aliases nest deeper than {MAX_DEPTH} levels (line "
                                 f"{node.start_mark.line + 1})")
            continue
        if key in sizes:
            continue
        if key in open_:
            raise InputError(f"{path}: a recursive alias (line {node.start_mark.line + 1}): a value contains itself")
        open_.add(key)
        stack.append((node, True))
        for c in _children(node):
            if id(c) not in sizes:
                stack.append((c, False))
    return sizes[id(root)]


def _children(node) -> list:
    import yaml
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def read_json(path, max_bytes: int = MAX_JSON_BYTES) -> object:
    """Parse a JSON file; errors (not JSON, not UTF-8, over ``max_bytes``, nested deeper than
    Python can parse) are a ``ValueError`` naming the file. A missing file: FileNotFoundError."""
    try:
        _check_size(path, max_bytes)
        with open(path, encoding="utf-8") as f:
            return parse_json(f.read(), path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file") from None


def parse_json(text: str, where) -> object:
    """``json.loads`` with errors that name ``where`` (a file) and the line."""
    import json
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: not valid JSON: line {e.lineno}: {e.msg}") from None
    except RecursionError:
        raise InputError(f"{where}: nested too deeply to be an augkit file") from None
    if _depth(data) > MAX_DEPTH:
        raise InputError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    return data


def _depth(data) -> int:
    """Nesting depth of parsed JSON (lists and dicts), without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, d = stack.pop()
        if isinstance(value, (list, dict)):
            deepest = max(deepest, d)
            stack.extend((v, d + 1) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def dump_yaml(data) -> str:
    import yaml
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


class OutputError(AugkitError, OSError):
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
        raise InputError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    f: IO[Any]
    tmp = None
    try:
        with deferred():  # a stop signal (augkit.signals) lands after `tmp` is known, never between
            fd, tmp = _temp_beside(path)
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


def _remove(tmp: str | None) -> None:
    if tmp is None:
        return
    try:
        os.unlink(tmp)
    except OSError:
        pass


def write_figure(fig, path, dpi: int) -> None:
    """A matplotlib figure as a PNG at ``path`` (laid out tight, written atomically) and closed.

    The drawing runs in a :func:`~augkit.signals.deferred` block: a stop signal that lands inside
    matplotlib's drawing can leave it half-drawn, and it then raises its own error over the stop.
    """
    import io
    buf = io.BytesIO()
    try:
        with deferred():
            fig.tight_layout()
            fig.savefig(buf, format="png", dpi=dpi)
    finally:
        import matplotlib.pyplot as plt
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def atomic_write_bytes(path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename: a crash never leaves half a file."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
