"""Model input: the one place where a uint8 image batch becomes the model's input and meets the model.

Training (:class:`augkit.train.loop.Engine`), checkpoint inference
(:class:`augkit.models.checkpoint.LandmarkModel`) and a wrapped ``torch.nn.Module``
(:class:`augkit.tta.TorchCallable`) all go through a :class:`ModelInput`:

- ``prepare``: uint8 NHWC (numpy or tensor) -> float32 NCHW on the device, normalised by
  ``(x - 255 * mean) / (255 * std)`` (ImageNet statistics by default); the host batch is page-locked
  and copied with ``non_blocking`` on CUDA; ``channels_last`` memory when asked;
- ``run``: the model call under autocast (``amp_dtype``; None: float32), output cast to float32.

The device and precision of inference are chosen by :func:`pick_device` and :func:`autocast_dtype`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from augkit.errors import InputError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ModelInput", "autocast_dtype", "normalise", "pick_device"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pick_device(device=None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when available, else the CPU; otherwise ``torch.device(device)``."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast_dtype(device: torch.device, amp: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``device``: on CUDA bf16 (``auto`` where the GPU has it, or ``bf16``)
    or fp16 (``fp16``, or ``auto`` without bf16); None (float32) off CUDA or with ``amp="off"``."""
    if amp not in ("auto", "bf16", "fp16", "off"):
        raise InputError(f"amp must be auto, bf16, fp16 or off, got {amp!r}")
    if torch.device(device).type != "cuda" or amp == "off":
        return None
    if amp == "fp16" or (amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def normalise(t: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """uint8 NHWC tensor -> normalised float NCHW (a permuted view: channels_last memory for free).

    ``mean`` and ``std`` are in pixel units (0-255). Shape: (N, H, W, C) -> (N, C, H, W).
    """
    x = t.permute(0, 3, 1, 2).float()
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


@dataclass(eq=False)
class ModelInput:
    """How an image batch enters the model.

    Args:
        device: where the model runs.
        amp_dtype: autocast dtype of the model call (None: float32).
        channels_last: NHWC memory for the input (set the model's memory format to match).
        mean, std: per-channel statistics of [0, 1] images (ImageNet by default).
        input_size: (h, w) the model takes; when set, :meth:`prepare` refuses other sizes.
    """

    device: torch.device | str = "cpu"
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    input_size: tuple | None = None

    def __post_init__(self):
        self.device = torch.device(self.device)
        if len(self.mean) != len(self.std):
            raise InputError(f"mean has {len(self.mean)} values and std {len(self.std)}: one per channel each")
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        if self.input_size is not None:
            self.input_size = tuple(int(v) for v in self.input_size)
        self.mean_px = torch.tensor(self.mean, device=self.device).view(1, -1, 1, 1) * 255
        self.std_px = torch.tensor(self.std, device=self.device).view(1, -1, 1, 1) * 255

    @classmethod
    def for_inference(cls, device="auto", amp: str = "auto", input_size=None, **kwargs) -> ModelInput:
        """The inference defaults: :func:`pick_device`, :func:`autocast_dtype`, channels_last on CUDA."""
        dev = pick_device(device)
        kwargs.setdefault("channels_last", dev.type == "cuda")
        return cls(dev, autocast_dtype(dev, amp), input_size=input_size, **kwargs)

    @property
    def pin(self) -> bool:
        """Whether host batches are page-locked (and copied with ``non_blocking``): on CUDA."""
        assert isinstance(self.device, torch.device)  # __post_init__ made it one
        return self.device.type == "cuda"

    def to_device(self, t: torch.Tensor) -> torch.Tensor:
        """A host tensor on the device (page-locked first on CUDA, then a ``non_blocking`` copy)."""
        if self.pin and not t.is_cuda and not t.is_pinned():
            t = t.pin_memory()
        return t.to(self.device, non_blocking=self.pin)

    def prepare(self, images) -> torch.Tensor:
        """uint8 images -> the model's input. Shape: (N, H, W, C) or (H, W, C) -> (N, C, H, W) float32."""
        t = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
        if t.ndim == 3:
            t = t[None]
        channels = len(self.mean)
        if t.ndim != 4 or t.shape[-1] != channels:
            raise InputError(f"images must be uint8 (N, H, W, {channels}), got shape {tuple(t.shape)}")
        if self.input_size is not None and tuple(t.shape[1:3]) != self.input_size:
            raise InputError(f"images are {tuple(t.shape[1:3])} (h, w); the model takes {self.input_size}: "
                             "run them through .preprocess first")
        return normalise(self.to_device(t), self.mean_px, self.std_px, self.channels_last)

    def run(self, net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``net(x)`` under autocast (``amp_dtype``), as float32."""
        assert isinstance(self.device, torch.device)  # __post_init__ made it one
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            out = net(x)
        return out.float()

    def __call__(self, net: torch.nn.Module, images) -> torch.Tensor:
        """``run(net, prepare(images))``: uint8 images -> the model's float32 output."""
        return self.run(net, self.prepare(images))
