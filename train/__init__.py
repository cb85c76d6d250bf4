"""augkit.train: read landmark datasets, train a torchvision regressor with augkit's fused
augmentation, validate in original pixels, checkpoint, resume, DDP.

Importing this package does not import torch: the submodules that need it (``model``, ``data``,
``losses``, ``checkpoint``, ``loop``) load it when they are imported. ``readers`` and
``synthetic`` are numpy/pandas/OpenCV only.

    from augkit.train.readers import read_dataset, read_test_points
    from augkit.train.checkpoint import load_model
"""

from __future__ import annotations

import importlib

__all__ = ["read_dataset", "read_test_points", "load_model", "build_model", "decode", "LandmarkTable", "run",
           "TrainConfig"]

_LAZY = {
    "read_dataset": "readers", "read_test_points": "readers", "LandmarkTable": "readers",
    "load_model": "checkpoint", "build_model": "model", "decode": "model", "run": "loop", "TrainConfig": "loop",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
