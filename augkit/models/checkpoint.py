"""Checkpoints: atomic save, load for resuming, and :func:`load_model` for inference (TTA).

A checkpoint is the training state saved as one object
(:meth:`augkit.train.state.TrainState.to_checkpoint`, a dict written with ``torch.save``):
``format``, ``version``, ``model`` (state dict), ``optimizer``, ``scheduler``, ``scaler``,
``epoch`` (epochs completed), ``step_in_epoch``, ``global_step``, ``running_loss``, ``rng``
(torch / CUDA / python / numpy states), ``world``, ``history`` (per-epoch metrics), ``best``,
plus the run's fixed facts: ``preprocessing`` (the preprocessing pipeline's ``to_dict``),
``train_pipeline``, ``scheme`` (``to_dict``), ``config`` (the run's options), ``model_info``
(backbone, n_points, input size, ``head``: its name and settings; a checkpoint without one is a
regression head's) and ``mean_shape``. :meth:`TrainState.restore` loads it back.
"""

from __future__ import annotations

import io
import os

import numpy as np
import torch

from augkit.errors import InputError
from augkit.compose import Compose
from augkit.files import atomic_write_bytes
from augkit.schemes import get_scheme

from . import CHECKPOINT_NAMES
from .heads import find_head
from .network import build_model
from .model_input import ModelInput, normalise, pick_device

__all__ = ["FORMAT", "LandmarkModel", "checkpoint_bytes", "load_model", "normalise", "read_checkpoint", "save_checkpoint"]

FORMAT = "augkit-train-checkpoint"


def checkpoint_bytes(state: dict) -> bytes:
    """A checkpoint as the bytes of its file (``torch.save`` of ``state`` with the format stamp)."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": 1, **state}, buf)
    return buf.getvalue()


def save_checkpoint(path, state: dict) -> None:
    """:func:`checkpoint_bytes`, written atomically (temp file + fsync + rename)."""
    atomic_write_bytes(path, checkpoint_bytes(state))


def read_checkpoint(path, map_location="cpu") -> dict:
    path = os.fspath(path)
    if os.path.isdir(path):  # a run folder: the checkpoint its consumers use (best, else last)
        path = next((p for p in (os.path.join(path, n) for n in CHECKPOINT_NAMES) if os.path.isfile(p)), path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:  # tensors and plain data only: a checkpoint never needs to run pickled code
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise InputError(f"{path}: not a readable augkit checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise InputError(f"{path}: not an augkit training checkpoint")
    return ck


class LandmarkModel:
    """A trained regressor ready for inference.

    Attributes:
        model: the torch module, eval mode, on ``device``.
        preprocess: deterministic :class:`augkit.Compose`, original image -> model input.
        scheme: the :class:`augkit.Scheme`.
        input_size: (h, w) of the model input.
        device: torch.device.
        n_points: K.
        info: the checkpoint's ``model_info``; ``config``: its run config.
        input: the :class:`~augkit.models.model_input.ModelInput` (normalisation, autocast on CUDA,
            channels_last on CUDA).
        head: the model's :class:`~augkit.models.heads.LandmarkHead`; ``has_sigma``: it gives σ
            (:meth:`call_with_sigma`).
        mean_shape: the training set's mean shape (K, 2) in the normalised model frame, or None
            (a checkpoint without one): the mean-shape baseline of ``augkit evaluate``.
        name: how the TTA tables name the model (``<name>/<view>``).
    """

    def __init__(self, model, preprocess, scheme, input_size, device, n_points, info=None, config=None,
                 mean_shape=None):
        self.model, self.preprocess, self.scheme = model, preprocess, scheme
        self.input_size, self.device, self.n_points = tuple(input_size), device, int(n_points)
        self.info, self.config = info or {}, config or {}
        self.input = ModelInput.for_inference(device, input_size=self.input_size)
        self.head = find_head(model, self.n_points, self.input_size)
        self.has_sigma = bool(self.head.has_sigma)
        self.mean_shape = None if mean_shape is None else np.asarray(mean_shape, dtype=np.float64)
        self.name = "model"   # how tables name it (augkit.tta.load_models: its checkpoint's file name)

    @property
    def amp_dtype(self):
        """Autocast dtype of the model call (None: float32); settable, e.g. to compare with float32."""
        return self.input.amp_dtype

    @amp_dtype.setter
    def amp_dtype(self, dtype) -> None:
        self.input.amp_dtype = dtype

    @property
    def channels_last(self) -> bool:
        return self.input.channels_last

    def to_tensor(self, images) -> torch.Tensor:
        """uint8 NHWC (numpy or tensor) -> float NCHW, ImageNet-normalised, on ``device``."""
        return self.input.prepare(images)

    def forward_tensor(self, t: torch.Tensor) -> torch.Tensor:
        """One model call on a normalised batch -> input-frame pixels. Shape: (N, 3, H, W) -> (N, K, 2)."""
        return self.forward_sigma(t)[0]

    def forward_sigma(self, t: torch.Tensor) -> tuple:
        """One model call on a normalised batch -> (points (N, K, 2), σ (N, K) or None), input-frame pixels."""
        with torch.no_grad():
            return self.head.decode(self.input.run(self.model, t))

    def __call__(self, images) -> np.ndarray:
        """uint8 (N, H, W, 3) model-input images -> (N, K, 2) float64 input-frame pixels."""
        return self.forward_tensor(self.to_tensor(images)).cpu().numpy().astype(np.float64)

    def call_with_sigma(self, images) -> tuple:
        """uint8 (N, H, W, 3) model-input images -> (points (N, K, 2), σ (N, K)) float64 input-frame
        pixels; σ is None for a head without one."""
        pts, sigma = self.forward_sigma(self.to_tensor(images))
        return (pts.cpu().numpy().astype(np.float64),
                None if sigma is None else sigma.cpu().numpy().astype(np.float64))

    def predict(self, images, batch_size: int = 64) -> np.ndarray:
        """Original images (a list of uint8 RGB arrays of any size) -> (N, K, 2) original pixels."""
        out: list[np.ndarray] = []
        for s in range(0, len(images), batch_size):
            res = [self.preprocess(im) for im in images[s:s + batch_size]]
            pred = self(np.stack([r.image for r in res]))
            out.extend(r.invert(p) for r, p in zip(res, pred))
        return np.stack(out) if out else np.zeros((0, self.n_points, 2))


def load_model(path, device="cpu") -> LandmarkModel:
    """A :class:`LandmarkModel` from ``best.pt`` / ``last.pt`` (or a run folder: best, else last)."""
    ck = read_checkpoint(path)
    dev = pick_device(device)
    info = ck["model_info"]
    head = info.get("head") or {"name": "regression", "settings": {}}   # older checkpoints: regression
    model = build_model(info["backbone"], info["n_points"], head=head["name"], head_settings=head.get("settings"),
                        input_size=info["input_size"])
    model.load_state_dict(ck["model"])
    model.eval().to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    scheme = get_scheme(ck["scheme"])
    pre_d = dict(ck["preprocessing"])
    pre_d["scheme"] = scheme.to_dict() if not scheme.builtin else scheme.name
    preprocess = Compose.from_dict(pre_d)
    return LandmarkModel(model, preprocess, scheme, tuple(info["input_size"]), dev, info["n_points"], info,
                         ck.get("config"), ck.get("mean_shape"))
