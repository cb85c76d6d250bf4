"""Pipelines to and from dicts and YAML/JSON files.

The file helpers (YAML reading, atomic writes) live in :mod:`augkit.files`, the bottom of the
stack; they are re-exported here so that ``from augkit.config import atomic_open`` keeps working.
"""

from __future__ import annotations

import json
import os
import tempfile  # noqa: F401 - kept importable as augkit.config.tempfile (tests patch its mkstemp)

from . import files
from .compose import Compose
from .files import *  # the file helpers' old home: they stay importable from here
from .files import atomic_write_text, dump_yaml, read_yaml

__all__ = ["load", "save"]
__all__ += files.__all__


def load(path) -> Compose:
    """A pipeline (``Compose``) from a YAML or JSON file written by ``save`` or by hand."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with 'type: Compose' and 'steps', got {type(data).__name__}")  # noqa: TRY004 - bad file content: ValueError, as callers expect
    try:
        return Compose.from_dict(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def save(pipeline, path) -> None:
    """Write a pipeline as YAML (JSON when the path ends in .json), atomically."""
    d = pipeline.to_dict()
    text = json.dumps(d, indent=1) if os.fspath(path).endswith(".json") else dump_yaml(d)
    atomic_write_text(path, text)
