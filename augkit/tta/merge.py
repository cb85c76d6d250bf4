"""Merging the inverted views into one prediction, and their spread (the uncertainty).

Shape: ``points`` is ``(N, M, K, 2)`` — N images, M members (models x views), K landmarks —
in original pixels; ``sigma`` is ``(N, M, K)``, each member's isotropic σ in original pixels
(models that report it). Nothing here modifies its input.

Methods (:func:`merge`, :func:`merge_with_sigma`):

- ``mean``: weighted mean, static weights ``(M,)`` or ``(M, K)`` (equal when None).
- ``median`` / ``trimmed``: per coordinate; weights are ignored.
- ``sigma``: inverse-variance weights per image x member x landmark, ``w ∝ base / σ²`` (``base``:
  the static weights). Needs σ.
- ``robust``: iteratively reweighted mean (:func:`robust_weights`) that down-weights members far
  from the others: start at the per-coordinate median of the members, then ``ROBUST_ITERS`` steps
  of Cauchy weights ``base / (1 + (e / ROBUST_C)²)`` of each member's scaled distance ``e`` to the
  current estimate. The scale per image x landmark is ``1.4826 x`` the median member distance
  (floored at ``floor`` pixels); ``e²`` averages the member's own scaled distance at the landmark
  and its median over the image's landmarks (a view that fails usually fails for the whole face).
  Uses no σ. With two members both are equally far from their midpoint, so ``robust`` is the plain
  mean: only σ can tell which of two is wrong (``sigma`` / ``sigma+robust``).
- ``sigma+robust``: both: ``base / σ²`` times the Cauchy weight, with the distance of member m
  scaled by ``sqrt(c² + 2 σ_m²)`` (``c`` the spread scale above; ``2 σ²`` the expected squared
  distance of a member with per-coordinate σ), so a member whose σ admits its disagreement is not
  punished twice.

The merged σ (:func:`merge_with_sigma`) is the merge-weighted mean of the members' σ per image x
landmark (the effective weights of the method; a plain mean for ``median`` / ``trimmed``).
"""

from __future__ import annotations

import numpy as np

from augkit.errors import InputError

__all__ = [
    "MERGES",
    "SIGMA_MERGES",
    "WEIGHTED_MERGES",
    "member_weights_per_image",
    "merge",
    "merge_with_sigma",
    "robust_weights",
    "spread",
    "weighted_mean",
]

MERGES = ("mean", "median", "trimmed", "sigma", "robust", "sigma+robust")
SIGMA_MERGES = ("sigma", "sigma+robust")                   # need the members' σ
WEIGHTED_MERGES = ("mean", "sigma", "robust", "sigma+robust")   # use the static weights as a base

ROBUST_ITERS = 10            # IRLS steps of the robust merges
ROBUST_C = 2.385             # Cauchy tuning constant (95% efficiency under Gaussian errors)
ROBUST_FLOOR = 0.1           # pixels: the least spread scale (members that agree exactly)
_MAD = 1.4826                # median absolute deviation -> standard deviation (Gaussian)
SIGMA_MIN = 1e-6             # pixels: the least σ (a σ of 0 would take all the weight)


def weighted_mean(points, weights=None) -> np.ndarray:
    """Weighted mean over members. ``weights``: None (equal), ``(M,)`` or ``(M, K)``; normalised
    per landmark. Shape: ``(N, M, K, 2) -> (N, K, 2)``."""
    p = np.asarray(points, dtype=np.float64)
    if weights is None:
        return p.mean(axis=1)
    w = _static(weights, p.shape[1], p.shape[2])
    return np.einsum("nmkc,mk->nkc", p, w)


def _static(weights, m: int, k: int) -> np.ndarray:
    """Static weights as ``(M, K)`` normalised per landmark (equal when None)."""
    if weights is None:
        return np.full((m, k), 1.0 / m)
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 1:
        w = np.broadcast_to(w[:, None], (w.shape[0], k))
    if w.shape != (m, k):
        raise InputError(f"weights must have shape ({m},) or ({m}, {k}), got {np.shape(weights)}")
    if (w < 0).any():
        raise InputError("weights must be non-negative")
    s = w.sum(axis=0)
    if (s <= 0).any():
        raise InputError("the weights of some landmark are all zero")
    return w / s


def _check_sigma(sigma, shape, method: str) -> np.ndarray:
    if sigma is None:
        raise InputError(f"merge {method!r} needs each member's σ, but none was given (the models report no σ)")
    s = np.asarray(sigma, dtype=np.float64)
    if s.shape != shape:
        raise InputError(f"sigma must have shape {shape} (images, members, points), got {s.shape}")
    return s


def robust_weights(points, weights=None, sigma=None, iters: int = ROBUST_ITERS, floor: float = ROBUST_FLOOR,
                   base=None) -> np.ndarray:
    """Effective weights of the robust merge (see the module doc), normalised per image x landmark.

    Args:
        points: (N, M, K, 2) member predictions.
        weights: static weights, None (equal), ``(M,)`` or ``(M, K)``.
        sigma: (N, M, K) member σ, or None: with σ the distance of member m is scaled by
            ``sqrt(c² + 2 σ_m²)`` instead of ``c``.
        iters: IRLS steps; floor: the least spread scale ``c`` in pixels.
        base: (N, M, K) per-image base weights replacing ``weights`` (the σ merge's ``w / σ²``).

    Shape: ``-> (N, M, K)``. Rows with NaN members give NaN weights.
    """
    p = np.asarray(points, dtype=np.float64)
    n, m, k, _ = p.shape
    b = np.broadcast_to(_static(weights, m, k), (n, m, k)) if base is None else np.asarray(base, dtype=np.float64)
    s2 = None if sigma is None else 2.0 * np.asarray(sigma, dtype=np.float64) ** 2
    est = np.median(p, axis=1)                                   # (N, K, 2)
    w = b / b.sum(axis=1, keepdims=True)
    if m < 2:
        return w
    for _ in range(int(iters)):
        d = np.sqrt(((p - est[:, None]) ** 2).sum(axis=-1))     # (N, M, K)
        c = np.maximum(_MAD * np.median(d, axis=1, keepdims=True), floor)
        e = d / (c if s2 is None else np.sqrt(c ** 2 + s2))
        whole = np.median(e, axis=2, keepdims=True)              # the member's typical distance on the image
        e2 = 0.5 * (e ** 2 + whole ** 2)
        w = b / (1.0 + e2 / ROBUST_C ** 2)
        w = w / w.sum(axis=1, keepdims=True)
        est = np.einsum("nmkc,nmk->nkc", p, w)
    return w


def member_weights_per_image(points, weights=None, method: str = "mean", sigma=None) -> np.ndarray:
    """The effective weights of a weighted method (``mean``, ``sigma``, ``robust``, ``sigma+robust``)
    per image x member x landmark, normalised over members. Shape: ``(N, M, K, 2) -> (N, M, K)``."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 4 or p.shape[-1] != 2:
        raise InputError(f"points must have shape (N, members, K, 2), got {p.shape}")
    n, m, k, _ = p.shape
    if method not in WEIGHTED_MERGES:
        raise InputError(f"merge method must be one of {', '.join(WEIGHTED_MERGES)} for weights, got {method!r}")
    w = _static(weights, m, k)
    if method == "mean":
        return np.broadcast_to(w, (n, m, k)).copy()
    if method == "robust":
        return robust_weights(p, w)
    s = _check_sigma(sigma, (n, m, k), method)
    inv = w / np.maximum(s, SIGMA_MIN) ** 2
    base = inv / inv.sum(axis=1, keepdims=True)
    if method == "sigma":
        return base
    return robust_weights(p, sigma=s, base=base)


def merge_with_sigma(points, sigma=None, weights=None, method: str = "mean",
                     trim: float = 0.2) -> tuple[np.ndarray, np.ndarray | None]:
    """``(merged (N, K, 2), merged σ (N, K) or None)``: see the module doc for the methods and the
    merged σ (None when ``sigma`` is None)."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 4 or p.shape[-1] != 2:
        raise InputError(f"points must have shape (N, members, K, 2), got {p.shape}")
    s = None if sigma is None else _check_sigma(sigma, p.shape[:3], method)
    if method in ("median", "trimmed"):
        if method == "median":
            out = np.median(p, axis=1)
        else:
            from scipy.stats import trim_mean
            out = trim_mean(p, trim, axis=1)
        return out, None if s is None else s.mean(axis=1)
    if method not in MERGES:
        raise InputError(f"merge method must be one of {', '.join(MERGES)}, got {method!r}")
    if method == "mean":
        w = _static(weights, p.shape[1], p.shape[2])
        return np.einsum("nmkc,mk->nkc", p, w), None if s is None else np.einsum("nmk,mk->nk", s, w)
    w = member_weights_per_image(p, weights, method, s)
    return np.einsum("nmkc,nmk->nkc", p, w), None if s is None else (w * s).sum(axis=1)


def merge(points, weights=None, method: str = "mean", trim: float = 0.2, sigma=None) -> np.ndarray:
    """Merge members by ``method`` (see the module doc): ``mean`` (weighted), ``median`` or
    ``trimmed`` (per coordinate, ``trim`` cut at each end; weights ignored), ``sigma``, ``robust``
    or ``sigma+robust`` (``sigma`` (N, M, K) needed by the σ ones). Shape: ``(N, M, K, 2) -> (N, K, 2)``."""
    return merge_with_sigma(points, sigma, weights, method, trim)[0]


def spread(points) -> np.ndarray:
    """Per landmark, the standard deviation of the members around their plain mean, as a distance:
    ``sqrt(mean_m |p_m - mean|^2)`` (pixels; 0 for a single member). Shape: ``(N, M, K, 2) -> (N, K)``."""
    p = np.asarray(points, dtype=np.float64)
    d = p - p.mean(axis=1, keepdims=True)
    return np.sqrt((d ** 2).sum(axis=-1).mean(axis=1))
