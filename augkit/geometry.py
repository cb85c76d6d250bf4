"""Geometry as 3x3 matrices on OpenCV pixel coordinates.

A matrix is affine (last row ``0 0 1``) unless a ``Perspective`` step made it projective.

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
    "apply_points", "invert", "is_identity", "is_affine", "perspective", "jacobian_det",
    "projective_divisors", "normalised", "rect_to_quad",
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


def is_affine(m: np.ndarray) -> bool:
    """True when the 3x3 ``m`` has the last row ``0 0 1`` (no projective part)."""
    return bool(m[2, 0] == 0.0 and m[2, 1] == 0.0 and m[2, 2] == 1.0)


def apply_points(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Move points by a 3x3 matrix: affine, or projective (then divided by ``m[2] . (x, y, 1)``, as
    ``cv2.warpPerspective`` divides; a point on the map's horizon, divisor 0, comes out NaN).

    Shape: ``points (..., K, 2)`` -> ``(..., K, 2)``, float64.
    """
    p = np.asarray(points, dtype=np.float64)
    if is_affine(m):
        return p @ m[:2, :2].T + m[:2, 2]
    q = p @ m[:, :2].T + m[:, 2]
    w = q[..., 2:]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(w != 0, q[..., :2] / np.where(w != 0, w, 1.0), np.nan)


def projective_divisors(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``m[2] . (x, y, 1)`` at each point (all ones for an affine ``m``): points of one sign lie on
    the same side of the map's horizon. Shape: ``points (..., K, 2)`` -> ``(..., K)``."""
    p = np.asarray(points, dtype=np.float64)
    return p @ m[2, :2] + m[2, 2]


def invert(m: np.ndarray) -> np.ndarray:
    """Exact inverse of a 3x3 matrix: closed form for an affine one (last row kept at 0 0 1), else
    the general inverse scaled so its ``[2, 2]`` is 1."""
    if not is_affine(m):
        det = float(np.linalg.det(m))
        if not np.isfinite(det) or abs(det) < 1e-300:
            raise InputError("the matrix is singular and cannot be inverted")
        return normalised(np.linalg.inv(m))
    a, b, c = m[0]
    d, e, f = m[1]
    det = a * e - b * d
    if det == 0.0:
        raise InputError("the matrix is singular and cannot be inverted")
    ia, ib, id_, ie = e / det, -b / det, -d / det, a / det
    return np.array([[ia, ib, -(ia * c + ib * f)], [id_, ie, -(id_ * c + ie * f)], [0.0, 0.0, 1.0]])


def normalised(m: np.ndarray) -> np.ndarray:
    """A projective ``m`` scaled so that ``m[2, 2]`` is 1 (the same map; left as it is when that
    entry is 0, or when ``m`` is affine)."""
    return m / m[2, 2] if m[2, 2] not in (0.0, 1.0) else m


def perspective(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 projective matrix (``[2, 2]`` = 1) that sends four ``src`` points onto four ``dst``
    points, solved in float64 (``cv2.getPerspectiveTransform`` works in float32 points)."""
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    x, y, u, v = src[:, 0], src[:, 1], dst[:, 0], dst[:, 1]
    a = np.zeros((8, 8))
    a[0::2, 0], a[0::2, 1], a[0::2, 2] = x, y, 1.0
    a[1::2, 3], a[1::2, 4], a[1::2, 5] = x, y, 1.0
    a[0::2, 6], a[0::2, 7] = -u * x, -u * y
    a[1::2, 6], a[1::2, 7] = -v * x, -v * y
    b = np.empty(8)
    b[0::2], b[1::2] = u, v
    try:
        h = np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        raise InputError("four of the perspective corners are collinear: no projective map") from None
    return np.append(h, 1.0).reshape(3, 3)


def rect_to_quad(w: float, h: float, quad) -> np.ndarray:
    """The projective matrix sending the pixel-edge corners of a ``w x h`` frame (top-left,
    top-right, bottom-right, bottom-left: ``(-0.5, -0.5)`` ... ``(-0.5, h - 0.5)``) onto the four
    points ``quad`` in that order. Closed form (the unit square onto a quadrilateral, then the frame
    onto the unit square), about ten times faster than the general 8x8 solve of :func:`perspective`.
    """
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = ((float(a), float(b)) for a, b in quad)
    dx1, dx2, dx3 = x1 - x2, x3 - x2, x0 - x1 + x2 - x3
    dy1, dy2, dy3 = y1 - y2, y3 - y2, y0 - y1 + y2 - y3
    if dx3 == 0.0 and dy3 == 0.0:
        g = hh = 0.0
    else:
        det = dx1 * dy2 - dx2 * dy1
        if det == 0.0:
            raise InputError("four of the perspective corners are collinear: no projective map")
        g, hh = (dx3 * dy2 - dx2 * dy3) / det, (dx1 * dy3 - dx3 * dy1) / det
    a, b, c = x1 - x0 + g * x1, x3 - x0 + hh * x3, x0
    d, e, f = y1 - y0 + g * y1, y3 - y0 + hh * y3, y0
    # the frame onto the unit square: u = (x + 0.5) / w, v = (y + 0.5) / h, folded into the columns
    sx, sy = 1.0 / w, 1.0 / h
    return np.array([[a * sx, b * sy, 0.5 * (a * sx + b * sy) + c],
                     [d * sx, e * sy, 0.5 * (d * sx + e * sy) + f],
                     [g * sx, hh * sy, 0.5 * (g * sx + hh * sy) + 1.0]])


def jacobian_det(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``|det|`` of the map's 2x2 Jacobian at each point: the local area factor (constant for an
    affine ``m``: ``|det|`` of its linear part; ``|det m| / w^3`` for a projective one).

    Shape: ``points (..., K, 2)`` -> ``(..., K)``.
    """
    p = np.asarray(points, dtype=np.float64)
    if is_affine(m):
        return np.full(p.shape[:-1], abs(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]))
    w = p @ m[2, :2] + m[2, 2]
    return abs(float(np.linalg.det(m))) / np.abs(w) ** 3


def is_identity(m: np.ndarray, tol: float = 1e-12) -> bool:
    """True when ``m`` is the identity within ``tol``."""
    return bool(np.abs(m - np.eye(3)).max() <= tol)
