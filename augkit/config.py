"""Pipelines to and from YAML/JSON files (:func:`load`, :func:`save`); the file helpers they use
(bounded YAML reading, atomic writes) are :mod:`augkit.files`."""

from __future__ import annotations

import json
import os

from .compose import Compose
from .errors import InputError
from .files import atomic_write_text, dump_yaml, read_yaml

__all__ = ["load", "save"]


def load(path) -> Compose:
    """A pipeline (``Compose``) from a YAML or JSON file written by ``save`` or by hand."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping with 'type: Compose' and 'steps', got {type(data).__name__}")  # noqa: TRY004 - bad file content: ValueError, as callers expect
    try:
        return Compose.from_dict(data)
    except ValueError as e:
        raise InputError(f"{path}: {e}") from None


def save(pipeline, path) -> None:
    """Write a pipeline as YAML (JSON when the path ends in .json), atomically."""
    d = pipeline.to_dict()
    text = json.dumps(d, indent=1) if os.fspath(path).endswith(".json") else dump_yaml(d)
    atomic_write_text(path, text)
