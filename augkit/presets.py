"""Ready-made pipelines for face landmarks: the model-input preprocessing and a training default."""

from __future__ import annotations

from augkit.errors import InputError
from .compose import Compose, OneOf
from .transforms import (
    Affine,
    BlackBars,
    Blur,
    BrightnessContrast,
    CenterCrop,
    Erase,
    Gamma,
    Grayscale,
    HFlip,
    JpegQuality,
    LetterBox,
    MotionBlur,
    Noise,
    ScaleMinSide,
)

__all__ = [
    "WARP_OPTIONS",
    "face_augment_steps",
    "face_train_pipeline",
    "preprocess_pipeline",
    "preprocess_steps",
    "warp_options",
]

#: the options of a ``Compose`` that decide how its one warp fills and samples pixels
WARP_OPTIONS = ("border_mode", "fill", "interpolation")


def preprocess_steps(size: int, mode: str = "crop") -> list:
    """Original image -> ``size x size`` model input.

    ``"crop"``: scale the shorter side to ``size`` and keep the centre (the competition baseline);
    ``"letterbox"``: fit the whole image and pad.
    """
    if mode == "crop":
        return [ScaleMinSide(size), CenterCrop(size, size)]
    if mode == "letterbox":
        return [LetterBox(size, size)]
    raise InputError(f"preprocessing mode must be 'crop' or 'letterbox', got {mode!r}")


def warp_options(pipeline: Compose | None) -> dict:
    """``border_mode``, ``fill`` and ``interpolation`` of ``pipeline`` (e.g. an ``--aug`` file's
    Compose); ``{}`` (the defaults) for None."""
    return {} if pipeline is None else {k: getattr(pipeline, k) for k in WARP_OPTIONS}


def preprocess_pipeline(size: int, mode: str = "crop", scheme=None, **warp) -> Compose:
    """The deterministic model-input pipeline (:func:`preprocess_steps`) with the warp options
    ``warp`` (:data:`WARP_OPTIONS`). Give it the training augmentation's options
    (:func:`warp_options`) so that validation and prediction pad (letterbox) and sample exactly as
    training did."""
    unknown = sorted(set(warp) - set(WARP_OPTIONS))
    if unknown:
        raise TypeError(f"preprocess_pipeline: unknown warp options {unknown}; expected {list(WARP_OPTIONS)}")
    return Compose(preprocess_steps(size, mode), scheme=scheme, **warp)


def face_augment_steps() -> list:
    """A sound random training pipeline for faces (applied after preprocessing, in the model frame)."""
    return [
        Affine(rotate=(-15, 15), scale=(0.9, 1.1), translate=(-0.05, 0.05), shear=(-4, 4), p=0.8),
        HFlip(p=0.5),
        BrightnessContrast(brightness=(-0.2, 0.2), contrast=(0.75, 1.25), p=0.6),
        Gamma(gamma=(0.7, 1.4), p=0.2),
        OneOf([Blur(sigma=(0.4, 1.5)), MotionBlur(length=(3, 7)), JpegQuality(quality=(30, 80))], p=0.3),
        Grayscale(p=0.1),
        Noise(std=(2, 8), p=0.1),
        BlackBars(size=(0.03, 0.12), p=0.1),
        Erase(n=1, area=(0.01, 0.06), p=0.2),
    ]


def face_train_pipeline(size: int = 128, mode: str = "crop", scheme="ibug68") -> Compose:
    """Preprocessing + augmentation for training, fused into one warp."""
    return Compose(preprocess_steps(size, mode) + face_augment_steps(), scheme=scheme)
