"""Shape geometry of the label audit (numpy only): complex-form point sets, the batched weighted
similarity, face size, robust centre and spread, and the views' pose spread. Used by
:mod:`augkit.audit`; nothing here knows about the audit's statistics."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

__all__ = ["pose_spread"]

FIT_CHUNK = 2048           # images the audit's fit computes at a time (bounds its temporaries)


def _c(x: np.ndarray) -> np.ndarray:
    return x[..., 0] + 1j * x[..., 1]


def _face_size(pts: np.ndarray, norm) -> np.ndarray:
    if norm is not None:
        d = np.linalg.norm(pts[:, norm[0]] - pts[:, norm[1]], axis=-1)
    else:
        d = np.linalg.norm(np.nanmax(pts, axis=1) - np.nanmin(pts, axis=1), axis=-1)
    return np.maximum(d, 1e-9)


def _similarity(src: np.ndarray, dst: np.ndarray, w: np.ndarray | None = None):
    """Weighted least-squares similarity taking each src onto its dst, batched, in complex form
    (``dst - m_dst ~ c (src - m_src)``, ``c = s e^{i theta}``). Shape: (B, K) complex x 2, w (B, K)
    -> (mapped src (B, K) complex, c (B,), m_src (B,), m_dst (B,))."""
    w = np.ones(src.shape, np.float64) if w is None else w
    w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
    ms, md = (w * src).sum(axis=1), (w * dst).sum(axis=1)
    a, b = src - ms[:, None], dst - md[:, None]
    c = (w * np.conj(a) * b).sum(axis=1) / np.maximum((w * np.abs(a) ** 2).sum(axis=1), 1e-300)
    return c[:, None] * a + md[:, None], c, ms, md


def _normalised(z: np.ndarray) -> np.ndarray:
    """Shapes centred and scaled to unit RMS radius. Shape: (B, K) complex."""
    z = z - z.mean(axis=1, keepdims=True)
    return z / np.maximum(np.sqrt((np.abs(z) ** 2).mean(axis=1, keepdims=True)), 1e-300)


def _top_rms(z: np.ndarray, top: int) -> np.ndarray:
    return np.sqrt(np.mean(np.sort(z ** 2, axis=1)[:, -top:], axis=1))


def _robust(t: np.ndarray, axis=0):
    """(median, 1.4826 MAD) along ``axis``."""
    m = np.median(t, axis=axis)
    return m, np.maximum(1.4826 * np.median(np.abs(t - m), axis=axis), 1e-9)


def pose_spread(members: np.ndarray, merged: np.ndarray, norm=None) -> np.ndarray:
    """How much the TTA views disagree on where the face is, how large and how turned: the spread
    over views of the similarity taking the merged prediction onto each view's (the norm of the
    translation's standard deviations / face size; of the log scale; of the rotation in radians).
    Shape: members (B, M, K, 2), merged (B, K, 2) -> (B, 3); zeros for a single view."""
    b, m, k = members.shape[:3]
    zm = _c(np.asarray(members, np.float64)).reshape(b * m, k)
    zp = np.repeat(_c(np.asarray(merged, np.float64)), m, axis=0)
    _, c, ms, md = _similarity(zp, zm)
    d = np.repeat(_face_size(np.asarray(merged, np.float64), norm), m)
    t = (md - ms) / d
    pose = np.stack([t.real, t.imag, np.log(np.maximum(np.abs(c), 1e-12)), np.angle(c)], axis=1).reshape(b, m, 4)
    sd = pose.std(axis=1)
    return np.stack([np.hypot(sd[:, 0], sd[:, 1]), sd[:, 2], sd[:, 3]], axis=1)


def _chunked(fn, *arrays) -> np.ndarray:
    """``fn`` of the arrays' rows ``FIT_CHUNK`` at a time, concatenated: the fit's temporaries stay
    those of one chunk, whatever the sample."""
    return np.concatenate([fn(*(a[i:i + FIT_CHUNK] for a in arrays)) for i in range(0, len(arrays[0]), FIT_CHUNK)])


def _upper(t: np.ndarray, q: float):
    """(median, one-sided spread) along axis 0, the spread matched at the ``q``-th percentile as for
    a normal law (``(q95 - median) / 1.645``): each statistic's upper tail over right labels maps to
    the same units, so the largest of them is not always the one whose right labels have the longest
    tail, and a log statistic's long lower tail near 0 counts for nothing."""
    m = np.median(t, axis=0)
    return m, np.maximum((np.percentile(t, q, axis=0) - m) / NormalDist().inv_cdf(q / 100), 1e-9)
