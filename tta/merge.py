"""Merging the inverted views into one prediction, and their spread (the uncertainty).

Shape: ``points`` is ``(N, M, K, 2)`` — N images, M members (models x views), K landmarks —
in original pixels. Nothing here modifies its input.
"""

from __future__ import annotations

import numpy as np

__all__ = ["merge", "weighted_mean", "spread"]


def weighted_mean(points, weights=None) -> np.ndarray:
    """Weighted mean over members. ``weights``: None (equal), ``(M,)`` or ``(M, K)``; normalised
    per landmark. Shape: ``(N, M, K, 2) -> (N, K, 2)``."""
    p = np.asarray(points, dtype=np.float64)
    n, m, k, _ = p.shape
    if weights is None:
        return p.mean(axis=1)
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 1:
        w = np.broadcast_to(w[:, None], (m, k))
    if w.shape != (m, k):
        raise ValueError(f"weights must have shape ({m},) or ({m}, {k}), got {np.shape(weights)}")
    if (w < 0).any():
        raise ValueError("weights must be non-negative")
    s = w.sum(axis=0)
    if (s <= 0).any():
        raise ValueError("the weights of some landmark are all zero")
    return np.einsum("nmkc,mk->nkc", p, w / s)


def merge(points, weights=None, method: str = "mean", trim: float = 0.2) -> np.ndarray:
    """Merge members: ``mean`` (weighted), ``median`` or ``trimmed`` (per coordinate, ``trim`` cut
    at each end; weights are ignored by median and trimmed). Shape: ``(N, M, K, 2) -> (N, K, 2)``."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 4 or p.shape[-1] != 2:
        raise ValueError(f"points must have shape (N, members, K, 2), got {p.shape}")
    if method == "mean":
        return weighted_mean(p, weights)
    if method == "median":
        return np.median(p, axis=1)
    if method == "trimmed":
        from scipy.stats import trim_mean
        return trim_mean(p, trim, axis=1)
    raise ValueError(f"merge method must be mean, median or trimmed, got {method!r}")


def spread(points) -> np.ndarray:
    """Per landmark, the standard deviation of the members around their plain mean, as a distance:
    ``sqrt(mean_m |p_m - mean|^2)`` (pixels; 0 for a single member). Shape: ``(N, M, K, 2) -> (N, K)``."""
    p = np.asarray(points, dtype=np.float64)
    d = p - p.mean(axis=1, keepdims=True)
    return np.sqrt((d ** 2).sum(axis=-1).mean(axis=1))
