"""augkit.train: train a torchvision or timm regressor with augkit's fused augmentation,
validate in original pixels, checkpoint, resume, DDP.

Importing this package does not import torch: the submodules that need it (``model``, ``data``,
``losses``, ``checkpoint``, ``loop``, ``epoch``) load it when they are imported; ``config`` (the
options, declared once) and ``cli`` are torch-free. The readers live in the torch-free
:mod:`augkit.data` (``augkit.train.readers`` re-exports them).

    from augkit.train import TrainConfig, run
    from augkit.train.checkpoint import load_model
"""

from __future__ import annotations

import importlib

__all__ = ["read_dataset", "read_test_points", "load_model", "build_model", "decode", "LandmarkTable", "run",
           "TrainConfig"]

_LAZY = {
    "read_dataset": "readers", "read_test_points": "readers", "LandmarkTable": "readers", "TrainConfig": "config",
    "load_model": "checkpoint", "build_model": "model", "decode": "model", "run": "loop",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
