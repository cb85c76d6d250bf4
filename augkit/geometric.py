"""The geometric steps: each gives a 3x3 matrix on the current frame and an output size.

(The matrix builders they use are in :mod:`augkit.geometry`; the protocol in :mod:`augkit.steps`.)
A new geometric step is one ``GeometricStep`` subclass here with a ``matrix`` (and ``flips = True``
if it mirrors); it is registered by its class name and re-exported from :mod:`augkit.transforms`.
"""

from __future__ import annotations

import math

import numpy as np

from augkit.errors import InputError
from . import geometry as G
from ._checks import check_size
from .steps import GeometricStep

__all__ = ["Affine", "CenterCrop", "CropBox", "HFlip", "LetterBox", "Pad", "Perspective", "RandomCrop", "Resize",
           "ScaleMinSide"]


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
            raise InputError(f"Affine: shear {shear!r} with shear_y {shear_y!r} can fold the image (the matrix "
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


class Perspective(GeometricStep):
    """A projective warp: the image's corners move, the frame size is kept.

    Fused with the other geometric steps into one 3x3 matrix: a pipeline with a ``Perspective``
    that runs warps once with ``cv2.warpPerspective`` (an affine call keeps ``cv2.warpAffine``),
    points move by the projective map and ``invert`` uses the exact inverse matrix.

    Args:
        yaw: keystone across x, a fraction of the height: ``yaw > 0`` draws the left edge shorter
            by ``yaw`` (a head turned to its left), ``yaw < 0`` the right edge; in [-0.45, 0.45].
        pitch: keystone across y, a fraction of the width: ``pitch > 0`` the top edge shorter,
            ``pitch < 0`` the bottom edge; in [-0.45, 0.45].
        jitter: a number in [0, 0.24]: each corner moves by up to this fraction of the width (x)
            and height (y), drawn uniformly and independently per coordinate (the random corner
            jitter of ``albumentations.Perspective``). The record holds the draws as ``c0x`` ...
            ``c3y`` (corners top-left, top-right, bottom-right, bottom-left).

    ``max(|yaw|, |pitch|) / 2 + jitter`` must stay below 0.25 (no corner moves a quarter of the size
    along an axis: the image cannot fold). ``yaw`` and ``pitch`` are fixed numbers or ``(low, high)`` ranges like every step's magnitudes,
    so ``Perspective(yaw=0.1)`` is a fixed view (usable for TTA) and ``Perspective(jitter=0.05)``
    a random one.
    """

    def __init__(self, yaw=0.0, pitch=0.0, jitter=0.0, p=1.0):
        super().__init__(p, yaw=yaw, pitch=pitch, jitter=jitter)
        ky = self._range("yaw", yaw, -0.45, 0.45)
        kp = self._range("pitch", pitch, -0.45, 0.45)
        j = _jitter_bound(jitter)
        for i in range(4):
            self._range(f"c{i}x", (-j, j) if j else 0.0, -0.25, 0.25)
            self._range(f"c{i}y", (-j, j) if j else 0.0, -0.25, 0.25)
        # a corner that moves less than a quarter of the size along each axis stays in its own
        # quarter of the frame, so the quadrilateral stays convex (each corner is on the outer side
        # of the diagonal through its neighbours) and the horizon stays outside the image
        worst = max(abs(ky.lo), abs(ky.hi), abs(kp.lo), abs(kp.hi)) / 2 + j
        if worst >= 0.25:
            raise InputError(f"Perspective: yaw {yaw!r}, pitch {pitch!r} and jitter {jitter!r} can move a corner "
                             f"by {worst:.3g} of the size (max(|yaw|, |pitch|) / 2 + jitter): keep it below 0.25 "
                             "so the image cannot fold")

    def matrix(self, v, size):
        w, h = size
        off = [[v["c0x"] * w, v["c0y"] * h], [v["c1x"] * w, v["c1y"] * h],
               [v["c2x"] * w, v["c2y"] * h], [v["c3x"] * w, v["c3y"] * h]]
        yaw, pitch = v["yaw"], v["pitch"]
        # the keystones: the short edge's two corners move towards each other
        side = (0, 3) if yaw > 0 else (1, 2)           # left edge, or right edge
        off[side[0]][1] += 0.5 * abs(yaw) * h
        off[side[1]][1] -= 0.5 * abs(yaw) * h
        edge = (0, 1) if pitch > 0 else (3, 2)         # top edge, or bottom edge
        off[edge[0]][0] += 0.5 * abs(pitch) * w
        off[edge[1]][0] -= 0.5 * abs(pitch) * w
        if not any(x or y for x, y in off):
            return np.eye(3), size      # nothing moves: the call stays affine
        corners = ((-0.5, -0.5), (w - 0.5, -0.5), (w - 0.5, h - 0.5), (-0.5, h - 0.5))
        quad = [(cx + ox, cy + oy) for (cx, cy), (ox, oy) in zip(corners, off)]
        return G.normalised(G.rect_to_quad(w, h, quad)), size


def _jitter_bound(jitter) -> float:
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float, np.integer, np.floating)) or \
            not 0.0 <= float(jitter) <= 0.24:
        raise InputError(f"Perspective: jitter must be a number in [0, 0.24] (the largest corner move, a fraction "
                         f"of the size), got {jitter!r}")
    return float(jitter)


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
                raise InputError("CropBox needs a box=(x0, y0, x1, y1) argument or points to bound")
            ok = np.isfinite(points).all(axis=1)
            if not ok.any():
                raise InputError("CropBox: no finite points to bound and no box given")
            (x0, y0), (x1, y1) = points[ok].min(axis=0), points[ok].max(axis=0)
        else:
            x0, y0, x1, y1 = box
            if not (x1 > x0 and y1 > y0):
                raise InputError(f"CropBox: box must be (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {box!r}")
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
