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
    "apply_points", "invert", "is_identity", "is_affine", "perspective", "local_scales", "jacobian_det",
    "projective_divisors", "normalised",
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
    a = np.zeros((8, 8))
    b = np.zeros(8)
    for i, ((x, y), (u, v)) in enumerate(zip(src, dst)):
        a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y]
        a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y]
        b[2 * i], b[2 * i + 1] = u, v
    try:
        h = np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        raise InputError("four of the perspective corners are collinear: no projective map") from None
    return np.append(h, 1.0).reshape(3, 3)


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


def local_scales(m: np.ndarray, points: np.ndarray) -> tuple[float, float]:
    """The smallest length in the output of a unit step along source x and along source y, over
    ``points`` (source points; for an affine ``m`` the same everywhere: its column norms).

    Shape: ``points (K, 2)``.
    """
    if is_affine(m):
        return math.hypot(m[0, 0], m[1, 0]), math.hypot(m[0, 1], m[1, 1])
    p = np.asarray(points, dtype=np.float64)
    w = p @ m[2, :2] + m[2, 2]
    q = p @ m[:2, :2].T + m[:2, 2]          # numerators of the map
    # d(q/w)/dx = (m[:2, 0] - (q/w) m[2, 0]) / w, and the same for y
    u = q / w[:, None]
    dx = (m[:2, 0][None, :] - u * m[2, 0]) / w[:, None]
    dy = (m[:2, 1][None, :] - u * m[2, 1]) / w[:, None]
    return float(np.linalg.norm(dx, axis=1).min()), float(np.linalg.norm(dy, axis=1).min())


def is_identity(m: np.ndarray, tol: float = 1e-12) -> bool:
    """True when ``m`` is the identity within ``tol``."""
    return bool(np.abs(m - np.eye(3)).max() <= tol)
