"""Landmark error metrics in original pixels (numpy only).

Shape: ``pred`` and ``true`` are (N, K, 2); NaN rows in ``true`` are left out.
"""

from __future__ import annotations

import numpy as np

from .schemes import Scheme

__all__ = ["mse", "nme", "failure_rate", "summary", "normaliser"]


def mse(pred, true) -> float:
    """The competition metric: mean over images and points of the squared error in x and y
    averaged (``mean((pred - true) ** 2)``)."""
    d = np.asarray(pred, np.float64) - np.asarray(true, np.float64)
    return float(np.nanmean(d ** 2))


def normaliser(true, scheme: Scheme | None) -> np.ndarray:
    """Per image: the distance between the scheme's ``norm`` points (inter-ocular for ibug68), or
    the diagonal of the points' bounding box when the scheme names none. Shape: (N,)."""
    t = np.asarray(true, np.float64)
    if scheme is not None and scheme.norm is not None:
        a, b = scheme.norm
        return np.linalg.norm(t[:, a] - t[:, b], axis=-1)
    return np.linalg.norm(np.nanmax(t, axis=1) - np.nanmin(t, axis=1), axis=-1)


def per_image_nme(pred, true, scheme: Scheme | None) -> np.ndarray:
    """Mean point-to-point error per image divided by the normaliser. Shape: (N,)."""
    p, t = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    err = np.nanmean(np.linalg.norm(p - t, axis=-1), axis=1)
    return err / np.maximum(normaliser(t, scheme), 1e-9)


def nme(pred, true, scheme: Scheme | None) -> float:
    return float(np.mean(per_image_nme(pred, true, scheme)))


def failure_rate(pred, true, scheme: Scheme | None, threshold: float = 0.08) -> float:
    """Fraction of images whose NME exceeds ``threshold``."""
    return float(np.mean(per_image_nme(pred, true, scheme) > threshold))


def summary(pred, true, scheme: Scheme | None, threshold: float = 0.08) -> dict:
    """``{"mse", "nme", "fr"}`` for a set of predictions."""
    e = per_image_nme(pred, true, scheme)
    return {"mse": mse(pred, true), "nme": float(e.mean()), "fr": float((e > threshold).mean())}
