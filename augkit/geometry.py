"""Geometry as 3x3 matrices on OpenCV pixel coordinates.

Convention (used everywhere in augkit): a point ``(x, y)`` is in pixels, ``x`` to the right and
``y`` down, and the centre of the top-left pixel is ``(0, 0)``; the pixel ``[r, c]`` covers
``[c - 0.5, c + 0.5] x [r - 0.5, r + 0.5]``. This is what ``cv2.warpAffine`` uses, so a matrix
that moves points also moves the image with ``cv2.warpAffine(img, M[:2], size)``.

A resize from ``w`` to ``w'`` pixels maps ``x -> (x + 0.5) * w'/w - 0.5`` (pixel edges stay on
pixel edges), a horizontal flip of a ``w``-wide image maps ``x -> w - 1 - x``.
"""

from __future__ import annotations

import math

import numpy as np

from augkit.errors import InputError

__all__ = [
    "identity", "translate", "scale", "rotate", "shear", "hflip", "resize", "about",
    "apply_points", "invert", "is_identity",
]


def identity() -> np.ndarray:
    """The 3x3 identity."""
    return np.eye(3)


def translate(tx: float, ty: float) -> np.ndarray:
    """``(x, y) -> (x + tx, y + ty)``."""
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def scale(sx: float, sy: float | None = None) -> np.ndarray:
    """Scale about the origin; ``sy`` defaults to ``sx``."""
    sy = sx if sy is None else sy
    return np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]])


def rotate(degrees: float) -> np.ndarray:
    """Rotate about the origin; positive is counter-clockwise on screen (as cv2.getRotationMatrix2D)."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])


def shear(x_degrees: float, y_degrees: float = 0.0) -> np.ndarray:
    """Shear about the origin: ``x += tan(x_degrees) * y`` and ``y += tan(y_degrees) * x``."""
    return np.array([[1.0, math.tan(math.radians(x_degrees)), 0.0],
                     [math.tan(math.radians(y_degrees)), 1.0, 0.0],
                     [0.0, 0.0, 1.0]])


def hflip(width: float) -> np.ndarray:
    """Mirror a ``width``-pixel-wide frame: ``x -> width - 1 - x``."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def resize(src_size: tuple[float, float], dst_size: tuple[float, float]) -> np.ndarray:
    """Map a ``src_size = (w, h)`` frame onto ``dst_size`` with pixel edges kept on pixel edges."""
    sx = dst_size[0] / src_size[0]
    sy = dst_size[1] / src_size[1]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def about(m: np.ndarray, cx: float, cy: float) -> np.ndarray:
    """``m`` applied about the point ``(cx, cy)`` instead of the origin."""
    return translate(cx, cy) @ m @ translate(-cx, -cy)


def apply_points(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Move points by an affine 3x3 matrix.

    Shape: ``points (..., K, 2)`` -> ``(..., K, 2)``, float64.
    """
    p = np.asarray(points, dtype=np.float64)
    return p @ m[:2, :2].T + m[:2, 2]


def invert(m: np.ndarray) -> np.ndarray:
    """Exact inverse of an affine 3x3 matrix (closed form, last row kept at 0 0 1)."""
    a, b, c = m[0]
    d, e, f = m[1]
    det = a * e - b * d
    if det == 0.0:
        raise InputError("the matrix is singular and cannot be inverted")
    ia, ib, id_, ie = e / det, -b / det, -d / det, a / det
    return np.array([[ia, ib, -(ia * c + ib * f)], [id_, ie, -(id_ * c + ie * f)], [0.0, 0.0, 1.0]])


def is_identity(m: np.ndarray, tol: float = 1e-12) -> bool:
    """True when ``m`` is the identity within ``tol``."""
    return bool(np.abs(m - np.eye(3)).max() <= tol)
