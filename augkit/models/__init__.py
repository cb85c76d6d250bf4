"""augkit.models: the landmark model, its input and its checkpoints, shared by training
(:mod:`augkit.train`), inference (:mod:`augkit.tta`) and the audit.

- ``network``: backbones (torchvision, timm, the tiny test net) with a landmark head
  (:func:`build_model`), the unit-coordinate convention (:func:`decode`, :func:`encode`);
- ``heads``: the head registry (:data:`HEAD_NAMES`): regression, rle, integral, simcc; each gives
  points and, except regression, a per-landmark sigma;
- ``losses``: the masked landmark losses (:data:`LOSSES`);
- ``model_input``: uint8 images to the network's input (normalisation, device, autocast);
- ``checkpoint``: a checkpoint on disk to a callable model (:func:`load_model`).
- ``onnx_export``: the model as one ONNX graph, uint8 images in, points (and σ) out
  (:class:`~augkit.models.onnx_export.ExportGraph`; ``augkit export`` through :mod:`augkit.tta.export`).

This package's own names are torch-free (the command line lists heads and losses without torch);
the submodules load torch when they are imported.

    from augkit.models import load_model
    model = load_model("run/best.pt")           # callable: uint8 NHWC batch -> (N, K, 2) points
"""

from __future__ import annotations

import importlib

__all__ = ["CHECKPOINT_NAMES", "HEAD_NAMES", "HEAD_SETTINGS", "LOSSES", "head_setting_defaults", "build_model", "decode", "encode",
           "load_model", "LandmarkModel", "ModelInput", "PretrainedUnavailable"]

# a run folder's checkpoints in the order a consumer of the run takes them (best, else last):
# augkit.run_folder.RunFolder's names, and load_model's rule for a folder
CHECKPOINT_NAMES = ("best.pt", "last.pt")

# the losses of augkit.models.losses
LOSSES = ("mse", "l1", "smooth-l1", "wing")

# the head registry: each head's settings (options of `augkit train`, recorded in the checkpoint)
# with their defaults; augkit.models.heads.HEADS holds the classes
HEAD_SETTINGS: dict[str, dict] = {
    "regression": {"loss": "smooth-l1"},
    "rle": {"rle_dist": "gaussian"},
    "integral": {"heatmap_stride": 8, "loss": "smooth-l1"},
    "simcc": {"simcc_ratio": 2.0, "simcc_sigma": 2.0},
}
HEAD_NAMES = tuple(HEAD_SETTINGS)


def head_setting_defaults(name: str) -> dict:
    """The default of every setting of head ``name``."""
    return dict(HEAD_SETTINGS[name])


_LAZY = {"build_model": "network", "decode": "network", "encode": "network", "PretrainedUnavailable": "network",
         "load_model": "checkpoint", "LandmarkModel": "checkpoint", "ModelInput": "model_input"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
