"""The steps of a pipeline, gathered in one namespace.

Geometric steps (a matrix, an output size, maybe a flip) live in :mod:`augkit.geometric`,
photometric ones (a pure image kernel, identity on points) in :mod:`augkit.photometric`, and the
protocol they share (``Step``, the registry) in :mod:`augkit.steps`. Every step turns values into
an effect (``matrix`` or ``apply``); random mode only draws the values first (``draw``). A scalar
argument fixes a value, a ``(low, high)`` pair samples it, and ``p`` is the probability that the
step runs at all. The values drawn are what a record keeps.
"""

from __future__ import annotations

from .geometric import (
    Affine,
    CenterCrop,
    CropBox,
    HFlip,
    LetterBox,
    Pad,
    Perspective,
    RandomCrop,
    Resize,
    ScaleMinSide,
)
from .photometric import (
    CLAHE,
    BlackBars,
    Blur,
    BrightnessContrast,
    Caption,
    CoarseDropout,
    ColorJitter,
    Downscale,
    Erase,
    Gamma,
    Grayscale,
    JpegQuality,
    MotionBlur,
    Noise,
    RandomPatch,
    Sharpen,
)
from .steps import REGISTRY, GeometricStep, PhotometricStep, Step

__all__ = [
    "REGISTRY",
    "Affine",
    "BlackBars",
    "Blur",
    "BrightnessContrast",
    "CLAHE",
    "Caption",
    "CoarseDropout",
    "ColorJitter",
    "RandomPatch",
    "CenterCrop",
    "CropBox",
    "Erase",
    "Gamma",
    "GeometricStep",
    "Grayscale",
    "Downscale",
    "Sharpen",
    "HFlip",
    "JpegQuality",
    "LetterBox",
    "MotionBlur",
    "Noise",
    "Pad",
    "Perspective",
    "PhotometricStep",
    "RandomCrop",
    "Resize",
    "ScaleMinSide",
    "Step",
]
