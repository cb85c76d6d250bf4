"""Albumentations interop: any image-only albumentations transform as an augkit step.

``ak.Photometric(A.CLAHE())`` leaves the points alone and draws its randomness from the
pipeline's generator (a seed per call, kept in the record, so replay is exact). Geometric
albumentations transforms are refused: they would move pixels without moving the points through
augkit's matrix, and the message names the augkit step to use instead.
"""

from __future__ import annotations

import numpy as np

from .transforms import PhotometricStep

__all__ = ["Photometric", "AUGKIT_EQUIVALENT"]

AUGKIT_EQUIVALENT = {
    "HorizontalFlip": "ak.HFlip", "Affine": "ak.Affine", "ShiftScaleRotate": "ak.Affine",
    "Rotate": "ak.Affine(rotate=...)", "SafeRotate": "ak.Affine(rotate=...)",
    "RandomScale": "ak.Affine(scale=...)", "Perspective": "ak.Perspective",
    "RandomCrop": "ak.RandomCrop", "CenterCrop": "ak.CenterCrop", "Crop": "ak.CropBox",
    "CropAndPad": "ak.CropBox / ak.Pad", "BBoxSafeRandomCrop": "ak.CropBox",
    "RandomResizedCrop": "ak.RandomCrop + ak.Resize", "RandomSizedCrop": "ak.RandomCrop + ak.Resize",
    "Resize": "ak.Resize", "SmallestMaxSize": "ak.ScaleMinSide", "LongestMaxSize": "ak.LetterBox",
    "PadIfNeeded": "ak.Pad", "Pad": "ak.Pad", "CoarseDropout": "ak.CoarseDropout (photometric in augkit)",
    "Erasing": "ak.Erase", "VerticalFlip": "none: vertical flips of faces are not supported",
}


class Photometric(PhotometricStep):
    """Wrap an albumentations image-only transform (or its ``A.to_dict`` form) as a step."""

    random_values = True  # albumentations transforms draw their own values

    def __init__(self, transform, p=1.0):
        import albumentations as A
        if isinstance(transform, dict):
            transform = A.from_dict({"transform": transform} if "transform" not in transform else transform)
        name = type(transform).__name__
        if isinstance(transform, A.DualTransform) or not isinstance(transform, A.ImageOnlyTransform):
            hint = AUGKIT_EQUIVALENT.get(name)
            raise TypeError(
                f"ak.Photometric takes image-only albumentations transforms; {name} moves pixels, so its "
                "points would not follow through augkit's matrix. "
                + (f"Use {hint} instead." if hint else "Use the augkit geometric step that does the same."))
        super().__init__(p, transform=A.to_dict(transform)["transform"])
        self.transform = transform

    def draw(self, rng, size):
        return {"seed": int(rng.integers(2**31))}

    def apply(self, image, v):
        self.transform.set_random_seed(v["seed"])
        flat = image.ndim == 2  # AlbumentationsX refuses (H, W) where albumentations 2.0 took it; (H, W, 1) both
        try:
            out = self.transform(image=image[..., None] if flat else image, force_apply=True)["image"]
            if flat and out.ndim == 3 and out.shape[2] == 1:
                out = out[..., 0]
        except Exception as e:  # noqa: BLE001 - albumentations/OpenCV refuse some dtypes in their own words
            if image.dtype == np.uint8:
                raise
            why = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise self._not_for(image, why) from None
        if out.dtype != image.dtype and image.dtype != np.uint8 and out.shape[:2] == image.shape[:2]:
            raise self._not_for(image, f"it returned {out.dtype}")  # AlbumentationsX: uint16 in, float32 out
        if out.dtype != image.dtype or out.shape[:2] != image.shape[:2]:
            raise TypeError(f"{type(self.transform).__name__} turned a {image.dtype} {image.shape} image into "
                            f"{out.dtype} {out.shape}: ak.Photometric needs steps that keep size and dtype")
        return out

    def _not_for(self, image, why: str) -> TypeError:
        return TypeError(f"ak.Photometric({type(self.transform).__name__}) cannot take a {image.dtype} image ({why}); "
                         "convert it first, e.g. (image // 257).astype(np.uint8) for uint16 or "
                         "(image * 255).round().astype(np.uint8) for float32 in [0, 1]")

    def __repr__(self) -> str:
        return f"Photometric({self.transform!r}, p={self.p})"
