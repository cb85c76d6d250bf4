"""Scoring landmark labels against out-of-fold predictions: which label is most likely wrong, and how.

Everything is per image and vectorised over a chunk of images; numpy only (the runner that trains
the fold models and predicts is ``augkit.tta.audit``).

For one image with label ``L`` (K, 2), prediction ``P`` (K, 2) and TTA spread ``S`` (K,):

- **size**: residuals are divided by the face size ``d`` of the *prediction* (the distance between
  the scheme's ``norm`` points, else the diagonal of the points' box), so images of any size
  compare, and a label of the wrong size does not rescale its own residual;
- **the model's own uncertainty**: each point's residual is divided by
  ``sqrt(sigma_k^2 + (S / d)^2)``: ``sigma_k`` is the model's typical normalised error on landmark k
  (measured on images it never trained on), ``S`` the spread of the TTA views on this image. The
  result ``z`` is in units of "how far off the model itself could be";
- **score**: two statistics, the RMS of ``z`` over all points (a whole label off) and over the
  largest ``max(3, 5% of K)`` values (a few points off), each put in robust standard units over the
  whole set (median and MAD: most labels are right), the larger of the two (:func:`calibrate`);
  a label is suspect above ``DEFAULT_THRESHOLD`` of those units;
- **kind** (for a suspect): ``swap`` when re-indexing the label by the scheme's flip pairs fits at
  least twice as well (RMS z) and better than any similarity; ``points`` when at most a quarter of
  the points are far off (z > 3) and the median point fits (z < 1.5); ``shift`` / ``scale`` when
  the best similarity transform of the label onto the prediction fits at least twice as well and
  leaves the median point fitting (z < 1.5), named by what moves the points more; ``mismatch``
  otherwise (no similarity makes it fit: another face's label).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["score_labels", "calibrate", "LabelScore", "point_sigma", "KINDS", "DEFAULT_THRESHOLD", "POINT_Z"]

KINDS = ("swap", "shift", "scale", "mismatch", "points", "ok")
DEFAULT_THRESHOLD = 8.0    # calibrated score (robust standard units) above which a label is suspect
POINT_Z = 3.0              # a point this many "model sigmas" off is named in a `points` diagnosis


@dataclass
class LabelScore:
    """Per image of a chunk. Shape: (B,) arrays, ``points`` a list of index lists."""

    t_all: np.ndarray        # RMS of z over all points (a whole label off)
    t_top: np.ndarray        # RMS of the largest max(3, 5% of K) z values (a few points off)
    kind: list               # the diagnosis if the label is suspect: one of KINDS but "ok"
    points: list             # the far-off point indices (`points`), worst first; [] otherwise
    nme: np.ndarray          # plain mean point error / face size (label vs prediction)
    mse: np.ndarray          # plain MSE in pixels (label vs prediction)


def _face_size(pts: np.ndarray, norm) -> np.ndarray:
    if norm is not None:
        return np.linalg.norm(pts[:, norm[0]] - pts[:, norm[1]], axis=-1)
    return np.linalg.norm(np.nanmax(pts, axis=1) - np.nanmin(pts, axis=1), axis=-1)


def point_sigma(labels, preds, norm=None, floor: float = 1e-3) -> np.ndarray:
    """The model's typical normalised error per landmark, robustly: 1.2 x the median over images
    of ``|label - prediction| / face size`` (the RMS of a 2-D Gaussian error is 1.2 x its median,
    and the median ignores the few wrong labels). Shape: (N, K, 2) x 2 -> (K,)."""
    lab, pr = np.asarray(labels, np.float64), np.asarray(preds, np.float64)
    d = np.maximum(_face_size(pr, norm), 1e-9)
    r = np.linalg.norm(lab - pr, axis=-1) / d[:, None]
    return np.maximum(1.2 * np.nanmedian(r, axis=0), floor)


def _similarity(src: np.ndarray, dst: np.ndarray, w: np.ndarray):
    """Weighted least-squares similarity (scale, rotation, translation) taking each src onto dst,
    batched. Shape: (B, K, 2) x 2, w (B, K) -> mapped src (B, K, 2), scale (B,)."""
    w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    ms = (w[..., None] * src).sum(axis=1, keepdims=True)
    md = (w[..., None] * dst).sum(axis=1, keepdims=True)
    a, b = src - ms, dst - md
    # complex form: b ~ c * a with c = s e^{i theta}
    za, zb = a[..., 0] + 1j * a[..., 1], b[..., 0] + 1j * b[..., 1]
    c = (w * np.conj(za) * zb).sum(axis=1) / np.maximum((w * np.abs(za) ** 2).sum(axis=1), 1e-12)
    mapped = c[:, None] * za
    out = np.stack([mapped.real, mapped.imag], axis=-1) + md
    return out, np.abs(c)


def _rms(z: np.ndarray) -> np.ndarray:
    return np.sqrt(np.nanmean(z ** 2, axis=1))


def score_labels(labels, preds, spread, sigma, perm=None, norm=None) -> LabelScore:
    """Raw statistics and the diagnosis of a chunk of labels (see the module docstring); the score
    comes from :func:`calibrate` once every image's statistics are known.

    Args:
        labels, preds: (B, K, 2) pixels. spread: (B, K) pixels. sigma: (K,) from :func:`point_sigma`.
        perm: the scheme's flip permutation (None or the identity: no ``swap`` diagnosis).
        norm: the scheme's two norm points (None: the box diagonal).
    """
    lab, pr = np.asarray(labels, np.float64), np.asarray(preds, np.float64)
    b, k = lab.shape[:2]
    d = np.maximum(_face_size(pr, norm), 1e-9)[:, None]
    s_eff = np.sqrt(np.asarray(sigma, np.float64)[None] ** 2 + (np.asarray(spread, np.float64) / d) ** 2)

    def z_of(candidate):
        return np.linalg.norm(candidate - pr, axis=-1) / d / s_eff

    z = z_of(lab)
    top = max(3, int(np.ceil(0.05 * k)))
    t_all = _rms(z)
    t_top = np.sqrt(np.mean(np.sort(np.nan_to_num(z, nan=0.0) ** 2, axis=1)[:, -top:], axis=1))
    err = np.linalg.norm(lab - pr, axis=-1)
    nme = np.nanmean(err, axis=1) / d[:, 0]
    mse = np.nanmean((lab - pr) ** 2, axis=(1, 2))
    has_swap = perm is not None and not np.array_equal(np.asarray(perm), np.arange(k))
    e_swap = _rms(z_of(lab[:, np.asarray(perm)])) if has_swap else np.full(b, np.inf)
    mapped, scale = _similarity(lab, pr, 1.0 / s_eff ** 2)
    z_sim = z_of(mapped)
    e_sim = _rms(z_sim)
    # what the similarity moves the points by: translation of the centre vs scaling about it
    centre_move = np.linalg.norm(mapped.mean(axis=1) - lab.mean(axis=1), axis=-1) / d[:, 0]
    radius = np.sqrt(((lab - lab.mean(axis=1, keepdims=True)) ** 2).sum(axis=-1).mean(axis=1)) / d[:, 0]
    scale_move = np.abs(scale - 1) * radius
    kinds: list[str] = []
    far: list[list[int]] = []
    for i in range(b):
        bad = np.flatnonzero(z[i] > POINT_Z)
        if has_swap and e_swap[i] < 0.5 * t_all[i] and e_swap[i] <= e_sim[i]:
            kinds.append("swap")
            far.append([])
        elif 0 < len(bad) <= max(1, k // 4) and np.nanmedian(z[i]) < 1.5:
            kinds.append("points")
            far.append(bad[np.argsort(-z[i][bad])].tolist())
        elif e_sim[i] < 0.5 * t_all[i] and np.nanmedian(z_sim[i]) < 1.5:
            kinds.append("scale" if scale_move[i] > centre_move[i] else "shift")
            far.append([])
        else:
            kinds.append("mismatch")
            far.append([])
    return LabelScore(t_all, t_top, kinds, far, nme, mse)


def calibrate(t_all, t_top) -> np.ndarray:
    """The score of every image from the raw statistics of all of them: each statistic in robust
    standard units over the set (``(t - median) / (1.4826 MAD)``: most labels are right, so this is
    the spread of right labels), the larger of the two. Shape: (N,) x 2 -> (N,)."""
    def robust(t):
        t = np.asarray(t, np.float64)
        m = np.nanmedian(t)
        mad = 1.4826 * np.nanmedian(np.abs(t - m))
        return (t - m) / max(mad, 1e-9)
    return np.maximum(robust(t_all), robust(t_top))
