"""The steps of a pipeline: geometric ones (a matrix, an output size, maybe a flip) and
photometric ones (a pure image kernel, identity on points).

Every step turns values into an effect (``matrix`` or ``apply``); random mode only draws the values
first (``draw``). A scalar argument fixes a value, a ``(low, high)`` pair samples it, and ``p`` is
the probability that the step runs at all. The values drawn are what a record keeps.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from . import functional as F
from . import geometry as G
from ._checks import Range, check_p, check_size

__all__ = [
    "Step", "GeometricStep", "PhotometricStep",
    "Affine", "HFlip", "RandomCrop", "CenterCrop", "CropBox", "Resize", "ScaleMinSide", "Pad",
    "LetterBox",
    "BrightnessContrast", "Gamma", "Blur", "MotionBlur", "Grayscale", "Noise", "JpegQuality",
    "BlackBars", "Erase",
]

REGISTRY: dict[str, type] = {}


def _plain(value):
    """Tuples to lists, numpy scalars to Python: what YAML and JSON take."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class Step:
    """Base of every pipeline step.

    Subclasses call ``super().__init__(p, **args)`` with their constructor arguments, so that
    ``to_dict`` can rebuild them; they list their magnitudes in ``self.ranges``.
    """

    geometric = False
    random_values = False  # True for steps that draw more than their ranges (noise, positions, seeds)
    record_keys = None  # the keys a record entry must have; None: the names of the ranges

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if not cls.__dict__.get("_abstract", False):
            REGISTRY[cls.__name__] = cls

    def __init__(self, p: float = 1.0, **args):
        self.p = check_p(p, type(self).__name__)
        self._args = {k: _plain(v) for k, v in args.items()}
        self.ranges: dict[str, Range] = {}

    def _range(self, name: str, value, minimum=None, maximum=None) -> Range:
        r = Range(value, name, type(self).__name__, minimum, maximum)
        self.ranges[name] = r
        return r

    def draw(self, rng, size: tuple[int, int]) -> dict:
        """The values of one call, drawn from ``rng`` (``size`` is the current (w, h))."""
        return {name: r.draw(rng) for name, r in self.ranges.items()}

    @property
    def deterministic(self) -> bool:
        """True when the step never draws: p is 0, or p is 1 and every value is fixed (a TTA view)."""
        return self.p == 0.0 or (self.p == 1.0 and not self.random_values
                                 and all(r.fixed for r in self.ranges.values()))

    def to_dict(self) -> dict:
        d = {"type": type(self).__name__, **self._args}
        if self.p != 1.0:
            d["p"] = self.p
        return d

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "type")
        return f"{type(self).__name__}({args})"


class GeometricStep(Step):
    """A step that moves pixels: a 3x3 matrix on the current frame plus an output size."""

    _abstract = True
    geometric = True
    flips = False
    binds = False  # True for steps whose values depend on the call's data (see bind)

    def bind(self, values: dict, points, box) -> dict:
        """Values that also depend on the call's data (a box, the current points); a replay
        finds them in its record already. Default: none."""
        return values

    def matrix(self, values: dict, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
        """``(M, (w, h))`` for the current frame ``size``."""
        raise NotImplementedError


class PhotometricStep(Step):
    """A step that changes pixel values only; points are left alone."""

    _abstract = True
    def apply(self, image: np.ndarray, values: dict) -> np.ndarray:
        """A new image (never the input modified in place)."""
        raise NotImplementedError


# ----------------------------------------------------------------------------------- geometric

class Affine(GeometricStep):
    """Rotate, scale, shear and shift about the image centre; the frame size is kept.

    Args:
        rotate: degrees, counter-clockwise on screen.
        scale: isotropic factor; ``scale_x`` / ``scale_y`` multiply it per axis.
        translate: shift as a fraction of the width (x) and height (y), drawn independently for
            each axis; ``translate_x`` / ``translate_y`` override it per axis.
        shear: degrees of x-shear (``x += tan(shear) * y``); ``shear_y`` the y-shear.
    """

    def __init__(self, rotate=0.0, scale=1.0, scale_x=1.0, scale_y=1.0, translate=0.0,
                 translate_x=None, translate_y=None, shear=0.0, shear_y=0.0, p=1.0):
        super().__init__(p, rotate=rotate, scale=scale, scale_x=scale_x, scale_y=scale_y,
                         translate=translate, translate_x=translate_x, translate_y=translate_y,
                         shear=shear, shear_y=shear_y)
        self._args = {k: v for k, v in self._args.items() if v is not None}
        self._range("rotate", rotate, -360, 360)
        self._range("scale", scale, 1e-3)
        self._range("scale_x", scale_x, 1e-3)
        self._range("scale_y", scale_y, 1e-3)
        self._range("translate_x", translate if translate_x is None else translate_x, -2, 2)
        self._range("translate_y", translate if translate_y is None else translate_y, -2, 2)
        kx, ky = self._range("shear", shear, -80, 80), self._range("shear_y", shear_y, -80, 80)
        worst = max(abs(math.tan(math.radians(a))) for a in (kx.lo, kx.hi)) * \
            max(abs(math.tan(math.radians(a))) for a in (ky.lo, ky.hi))
        if worst >= 0.9:
            raise ValueError(f"Affine: shear {shear!r} with shear_y {shear_y!r} can fold the image (the matrix "
                             "becomes singular or mirrored when tan(shear)*tan(shear_y) reaches 1); keep "
                             "|tan(shear) * tan(shear_y)| < 0.9")

    def matrix(self, v, size):
        w, h = size
        cx, cy = 0.5 * (w - 1), 0.5 * (h - 1)
        a = math.radians(v["rotate"])
        c, s = math.cos(a), math.sin(a)
        sx, sy = v["scale"] * v["scale_x"], v["scale"] * v["scale_y"]
        kx, ky = math.tan(math.radians(v["shear"])), math.tan(math.radians(v["shear_y"]))
        # L = R @ Sh @ S, written out: the hot path of every training sample
        l00, l01 = c * sx + s * ky * sx, c * kx * sy + s * sy
        l10, l11 = -s * sx + c * ky * sx, -s * kx * sy + c * sy
        tx = cx + v["translate_x"] * w - (l00 * cx + l01 * cy)
        ty = cy + v["translate_y"] * h - (l10 * cx + l11 * cy)
        return np.array([[l00, l01, tx], [l10, l11, ty], [0.0, 0.0, 1.0]]), size


class HFlip(GeometricStep):
    """Mirror left-right; landmark indices are swapped by the pipeline's scheme."""

    flips = True

    def __init__(self, p=1.0):
        super().__init__(p)

    def matrix(self, v, size):
        return G.hflip(size[0]), size


def _crop_size(owner, height, width):
    return check_size(height, "height", owner), check_size(width, "width", owner)


class RandomCrop(GeometricStep):
    """A ``height x width`` window at a random position (padded with the fill where larger)."""

    def __init__(self, height, width, p=1.0):
        super().__init__(p, height=height, width=width)
        self.h, self.w = _crop_size("RandomCrop", height, width)
        self._range("x", (0.0, 1.0))
        self._range("y", (0.0, 1.0))

    def matrix(self, v, size):
        x0 = math.floor(v["x"] * (size[0] - self.w + 1)) if size[0] >= self.w else (size[0] - self.w) // 2
        y0 = math.floor(v["y"] * (size[1] - self.h + 1)) if size[1] >= self.h else (size[1] - self.h) // 2
        x0 = min(x0, size[0] - self.w) if size[0] >= self.w else x0
        y0 = min(y0, size[1] - self.h) if size[1] >= self.h else y0
        return G.translate(-x0, -y0), (self.w, self.h)


class CenterCrop(GeometricStep):
    """The central ``height x width`` window (whole pixels; padded where the image is smaller)."""

    def __init__(self, height, width, p=1.0):
        super().__init__(p, height=height, width=width)
        self.h, self.w = _crop_size("CenterCrop", height, width)

    def matrix(self, v, size):
        return G.translate(-((size[0] - self.w) // 2), -((size[1] - self.h) // 2)), (self.w, self.h)


class CropBox(GeometricStep):
    """Crop to a box, e.g. a face box, grown by ``margin`` on each side.

    The box is the ``box=(x0, y0, x1, y1)`` given to the pipeline call (in the INPUT image's point
    coordinates, carried through any geometry before this step), or else the bounding box of the
    current points. Box corners are point coordinates: a detector box of pixel indices
    ``[c0, c1) x [r0, r1)`` is ``(c0 - 0.5, r0 - 0.5, c1 - 0.5, r1 - 0.5)``. A replay uses the box
    of its record unless it is given a ``box`` of its own. ``square`` grows the short side to a square; ``shift`` moves the box by a
    drawn fraction of its size (jitter for training). The output is the box's size in pixels;
    follow it with ``Resize`` for a fixed model input.
    """

    def __init__(self, margin=0.1, square=False, shift=0.0, p=1.0):
        super().__init__(p, margin=margin, square=square, shift=shift)
        self.square = bool(square)
        self._range("margin", margin, -0.45)
        self._range("shift_x", shift, -1, 1)
        self._range("shift_y", shift, -1, 1)

    binds = True

    def bind(self, values, points, box):
        if box is None and "box" in values:  # replay: the box of the record
            return values
        if box is None:
            if points is None:
                raise ValueError("CropBox needs a box=(x0, y0, x1, y1) argument or points to bound")
            ok = np.isfinite(points).all(axis=1)
            if not ok.any():
                raise ValueError("CropBox: no finite points to bound and no box given")
            (x0, y0), (x1, y1) = points[ok].min(axis=0), points[ok].max(axis=0)
        else:
            x0, y0, x1, y1 = box
            if not (x1 > x0 and y1 > y0):
                raise ValueError(f"CropBox: box must be (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {box!r}")
        return {**values, "box": [float(x0), float(y0), float(x1), float(y1)]}

    def matrix(self, v, size):
        x0, y0, x1, y1 = v["box"]
        bw, bh = x1 - x0, y1 - y0
        if self.square:
            bw = bh = max(bw, bh)
        cx = 0.5 * (x0 + x1) + v["shift_x"] * bw
        cy = 0.5 * (y0 + y1) + v["shift_y"] * bh
        bw, bh = bw * (1 + 2 * v["margin"]), bh * (1 + 2 * v["margin"])
        ow, oh = max(1, round(bw)), max(1, round(bh))
        return G.translate(-(cx - 0.5 * (ow - 1)), -(cy - 0.5 * (oh - 1))), (ow, oh)


class Resize(GeometricStep):
    """Resize to ``height x width`` (pixel edges onto pixel edges)."""

    def __init__(self, height, width, p=1.0):
        super().__init__(p, height=height, width=width)
        self.h, self.w = _crop_size("Resize", height, width)

    def matrix(self, v, size):
        return G.resize(size, (self.w, self.h)), (self.w, self.h)


class ScaleMinSide(GeometricStep):
    """Scale so the shorter side is ``size`` pixels (the competition baseline's ScaleMinSideToSize)."""

    def __init__(self, size, p=1.0):
        super().__init__(p, size=size)
        self.size = check_size(size, "size", "ScaleMinSide")

    def matrix(self, v, size):
        s = self.size / min(size)
        out = (max(1, round(size[0] * s)), max(1, round(size[1] * s)))
        return G.resize(size, out), out


class Pad(GeometricStep):
    """Pad (centred, with the pipeline's fill) to at least ``height x width``."""

    def __init__(self, height, width, p=1.0):
        super().__init__(p, height=height, width=width)
        self.h, self.w = _crop_size("Pad", height, width)

    def matrix(self, v, size):
        out = (max(size[0], self.w), max(size[1], self.h))
        return G.translate(-((size[0] - out[0]) // 2), -((size[1] - out[1]) // 2)), out


class LetterBox(GeometricStep):
    """Scale the whole image to fit ``height x width`` keeping its aspect, pad the rest (centred)."""

    def __init__(self, height, width, p=1.0):
        super().__init__(p, height=height, width=width)
        self.h, self.w = _crop_size("LetterBox", height, width)

    def matrix(self, v, size):
        s = min(self.w / size[0], self.h / size[1])
        inner = (max(1, round(size[0] * s)), max(1, round(size[1] * s)))
        m = G.resize(size, inner)
        m[0, 2] += (self.w - inner[0]) // 2
        m[1, 2] += (self.h - inner[1]) // 2
        return m, (self.w, self.h)


# --------------------------------------------------------------------------------- photometric

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
            raise ValueError(f"Blur: kind must be 'gaussian' or 'box', got {kind!r}")
        self.kind = kind
        if kind == "gaussian":
            self._range("sigma", sigma, 0)
        else:
            self._range("ksize", ksize, 1)

    def apply(self, image, v):
        if self.kind == "gaussian":
            return F.gaussian_blur(image, v["sigma"])
        return F.box_blur(image, v["ksize"])


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
        return F.jpeg(image, int(round(v["quality"])))


class BlackBars(PhotometricStep):
    """Letterbox bars: black bands top and bottom, or left and right, of ``size`` x the side each.

    ``orientation`` is "horizontal" (top/bottom), "vertical" (left/right) or "random"; ``fill`` is a
    pixel value in the image's own dtype (0 is black for all of them).
    """

    def __init__(self, size=(0.05, 0.15), orientation="random", fill=0, p=1.0):
        super().__init__(p, size=size, orientation=orientation, fill=fill)
        if orientation not in ("horizontal", "vertical", "random"):
            raise ValueError(f"BlackBars: orientation must be 'horizontal', 'vertical' or 'random', got {orientation!r}")
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
            n = int(round(v["size"] * image.shape[1]))
            if n:
                color[:, :n] = self.fill
                color[:, -n:] = self.fill
        else:
            n = int(round(v["size"] * image.shape[0]))
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
            raise ValueError(f"Erase: fill must be a number, 'random' or 'noise', got {fill!r}")
        self.fill = fill

    random_values = True  # where the rectangles go is random
    record_keys = ("rects", "seed")

    def draw(self, rng, size):
        n = int(round(self.ranges["n"].draw(rng)))
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
