"""augkit.train: train a landmark regressor (:mod:`augkit.models`) with augkit's fused
augmentation, validate in original pixels, checkpoint, resume, DDP.

Importing this package does not import torch: the submodules that need it (``data``, ``loop``,
``epoch``) load it when they are imported; ``config`` (the options, declared once) is torch-free.
The readers live in the torch-free :mod:`augkit.data`, the model and its checkpoints in
:mod:`augkit.models`.

    from augkit.train import TrainConfig, run
    run(TrainConfig(data="data/train", out="runs/a", epochs=5))
"""

from __future__ import annotations

import importlib

__all__ = ["TrainConfig", "run"]

_LAZY = {"TrainConfig": "config", "run": "loop"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
