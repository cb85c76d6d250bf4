"""Pipelines to and from dicts and YAML/JSON files, and atomic file writes."""

from __future__ import annotations

import json
import os
import tempfile

__all__ = ["load", "save", "read_yaml", "dump_yaml", "atomic_write_text", "atomic_write_bytes"]


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


def atomic_write_bytes(path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename: a crash never leaves half a file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def load(path):
    """A pipeline (``Compose``) from a YAML or JSON file written by ``save`` or by hand."""
    from .compose import Compose
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with 'type: Compose' and 'steps', got {type(data).__name__}")
    try:
        return Compose.from_dict(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def save(pipeline, path) -> None:
    """Write a pipeline as YAML (JSON when the path ends in .json), atomically."""
    d = pipeline.to_dict()
    text = json.dumps(d, indent=1) if os.fspath(path).endswith(".json") else dump_yaml(d)
    atomic_write_text(path, text)
