"""augkit: invertible image augmentations and test-time augmentation for landmark regression.

Light by design: importing augkit loads numpy and OpenCV only. ``augkit.train`` and
``augkit.tta`` bring torch when they are imported.
"""

from . import functional, geometry
from .compose import Compose, OneOf, Result, Sometimes, invert_points
from .config import load, save
from .interop import Photometric
from .schemes import IBUG68, Scheme, get_scheme
from .transforms import (CLAHE, Affine, BlackBars, Blur, BrightnessContrast, Caption, CenterCrop, CoarseDropout,
                         ColorJitter, CropBox, Downscale, Erase, RandomPatch,
                         Gamma, Grayscale, HFlip, JpegQuality, LetterBox, MotionBlur, Noise, Pad, Perspective, RandomCrop,
                         Resize, ScaleMinSide, Sharpen, Step)

__version__ = "0.1.0"

__all__ = [
    "Compose", "OneOf", "Sometimes", "Result", "invert_points", "load", "save", "Photometric",
    "Scheme", "get_scheme", "IBUG68", "Step",
    "Affine", "HFlip", "RandomCrop", "CenterCrop", "CropBox", "Resize", "ScaleMinSide", "Pad", "LetterBox", "Perspective",
    "BrightnessContrast", "Gamma", "Blur", "MotionBlur", "Grayscale", "Noise", "JpegQuality", "BlackBars",
    "Erase", "Downscale", "Sharpen", "ColorJitter", "CLAHE", "CoarseDropout", "RandomPatch", "Caption",
    "functional", "geometry",
]
