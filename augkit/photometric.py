"""The photometric steps: pure image kernels (see :mod:`augkit.functional`), identity on points.

They run on the warped image, in pipeline order. A new one is a ``PhotometricStep`` subclass here
with an ``apply``; it is registered by its class name and re-exported from :mod:`augkit.transforms`.
"""

from __future__ import annotations

import math

from augkit.errors import InputError
from . import functional as F
from .steps import PhotometricStep

__all__ = [
    "BlackBars",
    "Blur",
    "BrightnessContrast",
    "Downscale",
    "Erase",
    "Gamma",
    "Grayscale",
    "JpegQuality",
    "MotionBlur",
    "Noise",
    "Sharpen",
]


class BrightnessContrast(PhotometricStep):
    """``out = (x - 127.5) * contrast + 127.5 + brightness * 255`` on the uint8 scale (one ``cv2.LUT``);
    uint16 and float32 images get the same relative change on their own range."""

    def __init__(self, brightness=0.0, contrast=1.0, p=1.0):
        super().__init__(p, brightness=brightness, contrast=contrast)
        self._range("brightness", brightness, -1, 1)
        self._range("contrast", contrast, 0)

    def apply(self, image, v):
        c = v["contrast"]
        return F.adjust_linear(image, c, 127.5 * (1 - c) + 255.0 * v["brightness"])


class Gamma(PhotometricStep):
    """``out = top * (x / top) ** gamma``, ``top`` the dtype's full scale (one LUT for uint8)."""

    def __init__(self, gamma=1.0, p=1.0):
        super().__init__(p, gamma=gamma)
        self._range("gamma", gamma, 1e-3)

    def apply(self, image, v):
        return F.adjust_gamma(image, v["gamma"])


class Blur(PhotometricStep):
    """Gaussian blur of standard deviation ``sigma`` px, or (``kind="box"``) a box of ``ksize`` px
    (rounded to the nearest odd size, so the image does not shift against the points)."""

    def __init__(self, sigma=1.0, kind="gaussian", ksize=3, p=1.0):
        super().__init__(p, sigma=sigma, kind=kind, ksize=ksize)
        if kind not in ("gaussian", "box"):
            raise InputError(f"Blur: kind must be 'gaussian' or 'box', got {kind!r}")
        self.kind = kind
        if kind == "gaussian":
            self._range("sigma", sigma, 0)
        else:
            self._range("ksize", ksize, 1)

    def apply(self, image, v):
        if self.kind == "gaussian":
            return F.gaussian_blur(image, v["sigma"])
        return F.box_blur(image, v["ksize"])


class Downscale(PhotometricStep):
    """Down to ``scale`` of the size, then back up (the low-resolution faces of a test set: video
    frames, thumbnails); ``scale`` in (0, 1], drawn like every parameter."""

    def __init__(self, scale=(0.25, 0.5), p=1.0):
        super().__init__(p, scale=scale)
        self._range("scale", scale, 0.01, 1)

    def apply(self, image, v):
        return F.downscale(image, v["scale"])


class Sharpen(PhotometricStep):
    """Unsharp mask: ``x + amount * (x - gaussian(x, sigma))`` (over-sharpened phone photos)."""

    def __init__(self, amount=(0.3, 1.0), sigma=1.0, p=1.0):
        super().__init__(p, amount=amount, sigma=sigma)
        self._range("amount", amount, 0, 5)
        self._range("sigma", sigma, 0.1, 10)

    def apply(self, image, v):
        return F.sharpen(image, v["amount"], v["sigma"])


class MotionBlur(PhotometricStep):
    """Blur along a line of ``length`` px at ``angle`` degrees (camera shake)."""

    def __init__(self, length=(3, 9), angle=(0, 180), p=1.0):
        super().__init__(p, length=length, angle=angle)
        self._range("length", length, 1)
        self._range("angle", angle, -360, 360)

    def apply(self, image, v):
        return F.motion_blur(image, v["length"], v["angle"])


class Grayscale(PhotometricStep):
    """Colour to gray, kept in the input's channel count (RGB order; alpha untouched)."""

    def __init__(self, p=1.0):
        super().__init__(p)

    def apply(self, image, v):
        return F.grayscale(image)


class Noise(PhotometricStep):
    """Additive Gaussian noise of ``std`` levels on the uint8 scale (0-255): a uint16 image gets
    ``std * 257``, a float32 one ``std / 255``."""

    def __init__(self, std=(2.0, 10.0), p=1.0):
        super().__init__(p, std=std)
        self._range("std", std, 0)

    random_values = True  # the noise field itself is random

    def draw(self, rng, size):
        v = super().draw(rng, size)
        v["seed"] = int(rng.integers(2**31))
        return v

    def apply(self, image, v):
        return F.add_noise(image, v["std"], v["seed"])


class JpegQuality(PhotometricStep):
    """Re-encode as JPEG at ``quality`` (1-100) to imitate compression artefacts (uint16 and float32:
    the artefacts of their 8-bit version, added at full precision)."""

    def __init__(self, quality=(30, 90), p=1.0):
        super().__init__(p, quality=quality)
        self._range("quality", quality, 1, 100)

    def apply(self, image, v):
        return F.jpeg(image, round(float(v["quality"])))


class BlackBars(PhotometricStep):
    """Letterbox bars: black bands top and bottom, or left and right, of ``size`` x the side each.

    ``orientation`` is "horizontal" (top/bottom), "vertical" (left/right) or "random"; ``fill`` is a
    pixel value in the image's own dtype (0 is black for all of them).
    """

    def __init__(self, size=(0.05, 0.15), orientation="random", fill=0, p=1.0):
        super().__init__(p, size=size, orientation=orientation, fill=fill)
        if orientation not in ("horizontal", "vertical", "random"):
            raise InputError(f"BlackBars: orientation must be 'horizontal', 'vertical' or 'random', got {orientation!r}")
        self.orientation, self.fill = orientation, fill
        self.random_values = orientation == "random"
        self._range("size", size, 0, 0.5)

    def draw(self, rng, size):
        v = super().draw(rng, size)
        o = self.orientation
        v["vertical"] = bool(rng.random() < 0.5) if o == "random" else o == "vertical"
        return v

    def apply(self, image, v):
        out = image.copy()
        color = out[..., :3] if out.ndim == 3 and out.shape[2] == 4 else out  # alpha kept
        if v["vertical"]:
            n = round(float(v["size"]) * image.shape[1])
            if n:
                color[:, :n] = self.fill
                color[:, -n:] = self.fill
        else:
            n = round(float(v["size"]) * image.shape[0])
            if n:
                color[:n] = self.fill
                color[-n:] = self.fill
        return out


class Erase(PhotometricStep):
    """Paint ``n`` rectangles (occluders) of ``area`` x the image area and ``aspect`` w/h.

    ``fill`` is a number (a pixel value in the image's own dtype), or "random" for a random colour per
    rectangle, or "noise" (both drawn over the dtype's full range).
    """

    def __init__(self, n=1, area=(0.02, 0.1), aspect=(0.3, 3.3), fill="random", p=1.0):
        super().__init__(p, n=n, area=area, aspect=aspect, fill=fill)
        self._range("n", n, 0)
        self._range("area", area, 0, 1)
        self._range("aspect", aspect, 1e-2)
        if isinstance(fill, str) and fill not in ("random", "noise"):
            raise InputError(f"Erase: fill must be a number, 'random' or 'noise', got {fill!r}")
        self.fill = fill

    random_values = True  # where the rectangles go is random
    record_keys = ("rects", "seed")

    def draw(self, rng, size):
        n = round(float(self.ranges["n"].draw(rng)))
        rects = []
        for _ in range(n):
            area = self.ranges["area"].draw(rng)
            logr = math.log(self.ranges["aspect"].lo), math.log(self.ranges["aspect"].hi)
            aspect = math.exp(logr[0] + (logr[1] - logr[0]) * rng.random())
            rw, rh = min(1.0, math.sqrt(area * aspect)), min(1.0, math.sqrt(area / aspect))
            rects.append([rng.random() * (1 - rw), rng.random() * (1 - rh), rw, rh])
        return {"rects": rects, "seed": int(rng.integers(2**31))}

    def apply(self, image, v):
        return F.erase(image, v["rects"], self.fill, v["seed"])
