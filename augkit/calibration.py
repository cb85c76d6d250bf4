"""How well a model's per-landmark uncertainty sigma matches its real errors (numpy only).

The model says each landmark's error is an isotropic 2-D Gaussian with standard deviation ``sigma``
per axis (pixels). If it is right, the distance ``|pred - truth|`` is within ``k sigma`` with
probability ``1 - exp(-k^2 / 2)`` (39.3% at 1 sigma, 86.5% at 2), the mean of
``|pred - truth|^2 / (2 sigma^2)`` is 1, and a point's per-axis RMS error equals its sigma.

- :func:`coverage`: the fraction of points within ``k sigma``, against :func:`gaussian_coverage`;
- :func:`ml_scale`: the factor ``s`` that, applied to every sigma, makes the errors most likely
  (``s^2 = mean(|err|^2 / (2 sigma^2))``): 1 when sigma is calibrated, 2 when it is half the truth;
- :func:`rank_correlation`: Spearman correlation of error and sigma, per image (the RMS over its
  points of each) and per point (all points pooled, a fixed-seed sample above ``max_pairs``);
- :func:`reliability`: per bin of sigma (quantiles), the bin's sigma against its per-axis RMS error;
- :class:`CalibrationAccumulator`: all of the above chunk by chunk, in memory that does not grow
  with the number of images (fixed log-spaced bins of sigma, a histogram of ``err / sigma``, bounded
  samples for the Spearman correlations: exact while everything fits);
- :func:`calibration_png`: the reliability curve and the coverage curve (matplotlib, imported there).

Shapes: ``pred`` and ``truth`` (N, K, 2), ``sigma`` (N, K), in the same pixels. A point with a
NaN coordinate (a missing label, an unreadable image) or a sigma that is not finite and positive is
left out.
"""

from __future__ import annotations

import math

import numpy as np

from augkit.errors import InputError

__all__ = ["CalibrationAccumulator", "Reservoir", "calibration_png", "calibration_summary", "coverage", "gaussian_coverage",
           "ml_scale", "rank_correlation", "reliability", "spearman", "COVERAGE_K", "MAX_PAIRS"]

COVERAGE_K = (1.0, 2.0)      # the multiples of sigma whose coverage is reported
MAX_PAIRS = 200_000           # most (sigma, error) pairs (and images) kept for each Spearman correlation
_R_STEP = 80                  # histogram of err / sigma: bins of 1/80 up to _R_MAX (1 and 2 are edges)
_R_MAX = 6
_LOG_PER_DECADE = 16          # fixed sigma bins: 16 per decade from 1e-3 to 1e4 pixels, plus under/overflow
_LOG_LO, _LOG_HI = -3, 4
_CURVE_K = np.arange(0, 33) / 8    # the coverage curve reported: k = 0, 0.125, ..., 4


def gaussian_coverage(k) -> np.ndarray | float:
    """What an isotropic 2-D Gaussian with per-axis ``sigma`` promises: the probability that the
    error is within ``k sigma``, ``1 - exp(-k^2 / 2)``. Scalar or array, as ``k``."""
    out = -np.expm1(-0.5 * np.asarray(k, np.float64) ** 2)
    return float(out) if np.ndim(out) == 0 else out


def _valid(pred, truth, sigma):
    """``(err (N, K) distance, sigma (N, K), ok (N, K))`` with ``ok`` the points that count."""
    p = np.asarray(pred, np.float64)
    t = np.asarray(truth, np.float64)
    s = np.asarray(sigma, np.float64)
    if p.ndim != 3 or p.shape[2] != 2:
        raise InputError(f"predictions must be (images, points, x/y), a 3-D array with x/y last; got shape {p.shape}")
    if t.shape != p.shape:
        raise InputError(f"labels must have the predictions' shape {p.shape}, got {t.shape}")
    if s.shape != p.shape[:2]:
        raise InputError(f"sigma must be (images, points) = {p.shape[:2]}, got {s.shape}")
    err = np.linalg.norm(p - t, axis=-1)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(err) & np.isfinite(s) & (s > 0)
    return err, s, ok


def coverage(pred, truth, sigma, k=COVERAGE_K) -> np.ndarray:
    """Fraction of the points whose error is within ``k sigma`` (``|pred - truth| <= k sigma``), for
    each ``k``; compare :func:`gaussian_coverage`. Shape: (len(k),); NaN without a valid point."""
    err, s, ok = _valid(pred, truth, sigma)
    r = err[ok] / s[ok]
    ks = np.atleast_1d(np.asarray(k, np.float64))
    if not r.size:
        return np.full(ks.shape, np.nan)
    return (r[:, None] <= ks[None]).mean(axis=0)


def ml_scale(pred, truth, sigma) -> float:
    """The maximum-likelihood factor ``s`` for sigma under the isotropic 2-D Gaussian: the ``s``
    maximising the likelihood of the errors with ``s sigma``, ``s^2 = mean(|err|^2 / (2 sigma^2))``
    over the valid points (NaN without one)."""
    err, s, ok = _valid(pred, truth, sigma)
    if not ok.any():
        return float("nan")
    return float(np.sqrt(np.mean(err[ok] ** 2 / (2 * s[ok] ** 2))))


def _rank(a: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 of ``a``, ties given their average rank."""
    order = np.argsort(a, kind="mergesort")
    v = a[order]
    first = np.r_[True, v[1:] != v[:-1]] if v.size else np.zeros(0, bool)
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], v.size]
    out = np.empty(v.size)
    out[order] = ((starts + ends - 1) / 2.0)[np.cumsum(first) - 1]
    return out


def spearman(a, b) -> float:
    """Spearman rank correlation of two samples (ties averaged); NaN for fewer than 3 values or a
    constant sample."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise InputError(f"the two samples must have the same length, got {a.size} and {b.size}")
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    ra, rb = _rank(a), _rank(b)
    ra -= ra.mean()
    rb -= rb.mean()
    return float((ra * rb).sum() / math.sqrt((ra ** 2).sum() * (rb ** 2).sum()))


def _per_image(err, s, ok):
    """Per image with a valid point: (RMS sigma, RMS error) over its valid points. Shape: (n, 2)."""
    n = ok.sum(axis=1)
    keep = n > 0
    e2 = np.where(ok, err, 0.0) ** 2
    s2 = np.where(ok, s, 0.0) ** 2
    return np.stack([np.sqrt(s2[keep].sum(axis=1) / n[keep]), np.sqrt(e2[keep].sum(axis=1) / n[keep])], axis=1)


def rank_correlation(pred, truth, sigma, max_pairs: int = MAX_PAIRS, seed: int = 0) -> tuple[float, float]:
    """``(rho_image, rho_point)``: Spearman correlation of error and sigma per image (the RMS over
    its valid points of each) and per point (all valid points pooled; a uniform sample of
    ``max_pairs`` with ``seed`` when there are more)."""
    err, s, ok = _valid(pred, truth, sigma)
    img = _per_image(err, s, ok)
    pts = np.stack([s[ok], err[ok]], axis=1)
    rng = np.random.default_rng(seed)
    if len(pts) > max_pairs:
        pts = pts[np.sort(rng.choice(len(pts), max_pairs, replace=False))]
    if len(img) > max_pairs:
        img = img[np.sort(rng.choice(len(img), max_pairs, replace=False))]
    return spearman(img[:, 0], img[:, 1]), spearman(pts[:, 0], pts[:, 1])


def reliability(pred, truth, sigma, n_bins: int = 10) -> dict:
    """Per quantile bin of sigma (``n_bins`` bins of about equal counts over the valid points): the
    bin's mean sigma, RMS sigma, per-axis RMS error (``sqrt(mean |err|^2 / 2)``; equal to the RMS
    sigma when calibrated) and count. Returns a dict of lists (``sigma_mean``, ``sigma_rms``,
    ``rms_error``, ``count``), empty bins left out."""
    if n_bins < 1:
        raise InputError(f"n_bins must be at least 1, got {n_bins}")
    err, s, ok = _valid(pred, truth, sigma)
    e, sv = err[ok], s[ok]
    edges = np.quantile(sv, np.linspace(0, 1, n_bins + 1)) if sv.size else np.zeros(2)
    b = np.clip(np.searchsorted(edges, sv, side="right") - 1, 0, n_bins - 1)
    return _bins_dict(np.bincount(b, minlength=n_bins), np.bincount(b, sv, n_bins),
                      np.bincount(b, sv ** 2, n_bins), np.bincount(b, e ** 2, n_bins))


def _bins_dict(count, s_sum, s2_sum, e2_sum) -> dict:
    keep = count > 0
    c = count[keep].astype(np.float64)
    return {"sigma_mean": (s_sum[keep] / c).tolist(), "sigma_rms": np.sqrt(s2_sum[keep] / c).tolist(),
            "rms_error": np.sqrt(e2_sum[keep] / (2 * c)).tolist(), "count": count[keep].astype(int).tolist()}


def calibration_summary(pred, truth, sigma, max_pairs: int = MAX_PAIRS, seed: int = 0) -> dict:
    """All the calibration numbers of in-memory arrays at once: the same dict as
    :meth:`CalibrationAccumulator.result` after one ``add``."""
    acc = CalibrationAccumulator(max_pairs=max_pairs, seed=seed)
    acc.add(pred, truth, sigma)
    return acc.result()


class Reservoir:
    """A uniform sample of at most ``size`` rows of ``width`` numbers (reservoir sampling, fixed
    seed); while everything fits it holds every row in arrival order, so statistics of it are exact."""

    def __init__(self, size: int, seed: int, width: int = 2):
        self.size = int(size)
        self.rows = np.empty((min(self.size, 4096), int(width)))   # grows (doubling) up to size
        self.n_seen = 0
        self._rng = np.random.default_rng(seed)

    def add(self, rows: np.ndarray) -> None:
        """Offer ``rows`` (B, width) to the sample."""
        fill = min(max(self.size - self.n_seen, 0), len(rows))
        if self.n_seen + fill > len(self.rows):
            grown = np.empty((min(self.size, max(self.n_seen + fill, 2 * len(self.rows))), self.rows.shape[1]))
            grown[:self.n_seen] = self.rows[:self.n_seen]
            self.rows = grown
        self.rows[self.n_seen:self.n_seen + fill] = rows[:fill]
        rest = rows[fill:]
        if len(rest):
            pos = self.n_seen + fill + np.arange(len(rest))    # 0-based positions in the stream
            slot = self._rng.integers(0, pos + 1)
            take = slot < self.size
            self.rows[slot[take]] = rest[take]
        self.n_seen += len(rows)

    def sample(self) -> np.ndarray:
        """The rows kept: (min(seen, size), width)."""
        return self.rows[:min(self.n_seen, self.size)]


class CalibrationAccumulator:
    """The calibration of sigma against the real errors, accumulated chunk by chunk.

    Memory: a few hundred bins and two samples of at most ``max_pairs`` x 2 float64, whatever the
    number of images (the competition: 100k images x 971 points). Coverage, the ML scale and the
    reliability bins are exact sums; the Spearman correlations are exact while the points (images)
    fit in ``max_pairs``, else on a uniform sample drawn with ``seed``.

    ``result()`` gives: ``n_points`` and ``n_images`` (valid), ``coverage_1`` / ``coverage_2`` (the
    fraction within 1 and 2 sigma) next to ``promised_1`` / ``promised_2`` (0.393, 0.865),
    ``rho_image`` and ``rho_point`` (Spearman of error and sigma), ``scale`` (the ML factor for
    sigma), ``reliability`` (adjacent log-spaced sigma bins merged until each holds about
    1/``n_bins`` of the points; the lists of :func:`reliability`) and ``coverage_curve`` (``k``,
    ``observed``, ``promised`` for k = 0 to 4 in steps of 1/8).
    """

    def __init__(self, max_pairs: int = MAX_PAIRS, seed: int = 0, n_bins: int = 12):
        if max_pairs < 3:
            raise InputError(f"max_pairs must be at least 3, got {max_pairs}")
        self.n_bins = int(n_bins)
        self._edges = 10.0 ** (np.arange(_LOG_LO * _LOG_PER_DECADE, _LOG_HI * _LOG_PER_DECADE + 1) / _LOG_PER_DECADE)
        nb = len(self._edges) + 1                     # underflow, the bins, overflow
        self._count, self._s, self._s2, self._e2 = (np.zeros(nb) for _ in range(4))
        self._r_edges = np.arange(_R_MAX * _R_STEP + 1) / _R_STEP
        self._r_count = np.zeros(len(self._r_edges) + 1)    # r <= edge[0], then (edge[i-1], edge[i]], then more
        self._ratio_sum = 0.0                          # sum of |err|^2 / (2 sigma^2)
        self._points = Reservoir(max_pairs, seed)
        self._images = Reservoir(max_pairs, seed + 1)
        self.n_points = self.n_images = 0

    def add(self, pred, truth, sigma) -> None:
        """Add one chunk: ``pred`` and ``truth`` (B, K, 2), ``sigma`` (B, K) in the same pixels."""
        err, s, ok = _valid(pred, truth, sigma)
        e, sv = err[ok], s[ok]
        if not e.size:
            return
        self.n_points += int(e.size)
        r = e / sv
        self._ratio_sum += float(np.sum(r ** 2) / 2)
        self._r_count += np.bincount(np.searchsorted(self._r_edges, r, side="left"), minlength=len(self._r_count))
        b = np.searchsorted(self._edges, sv, side="right")
        nb = len(self._count)
        self._count += np.bincount(b, minlength=nb)
        self._s += np.bincount(b, sv, nb)
        self._s2 += np.bincount(b, sv ** 2, nb)
        self._e2 += np.bincount(b, e ** 2, nb)
        self._points.add(np.stack([sv, e], axis=1))
        img = _per_image(err, s, ok)
        self.n_images += len(img)
        self._images.add(img)

    def coverage(self, k) -> np.ndarray:
        """Fraction of the points within ``k sigma`` for each ``k`` (exact at multiples of 1/80;
        else at the multiple of 1/80 just below ``k``). Shape: (len(k),)."""
        ks = np.atleast_1d(np.asarray(k, np.float64))
        if not self.n_points:
            return np.full(ks.shape, np.nan)
        cum = np.cumsum(self._r_count)                # cum[i]: points with r <= edge[i]
        i = np.searchsorted(self._r_edges, ks, side="right") - 1
        return np.where(i < 0, 0.0, cum[np.clip(i, 0, len(self._r_edges) - 1)]) / self.n_points

    def _merged_bins(self) -> dict:
        """Adjacent fine bins merged until each holds at least ``n_points / n_bins`` points."""
        target = max(1.0, self.n_points / max(self.n_bins, 1))
        groups, acc = [], np.zeros(4)
        for row in np.stack([self._count, self._s, self._s2, self._e2], axis=1):
            acc += row
            if acc[0] >= target:
                groups.append(acc)
                acc = np.zeros(4)
        if acc[0] > 0:
            if groups:
                groups[-1] = groups[-1] + acc
            else:
                groups.append(acc)
        g = np.array(groups).reshape(-1, 4)
        return _bins_dict(g[:, 0], g[:, 1], g[:, 2], g[:, 3])

    def result(self) -> dict:
        """The calibration of everything added so far (see the class docstring)."""
        if not self.n_points:
            raise InputError("no point with a finite prediction, label and positive sigma was given")
        pts, img = self._points.sample(), self._images.sample()
        c1, c2 = self.coverage(COVERAGE_K)
        return {
            "n_points": self.n_points,
            "n_images": self.n_images,
            "coverage_1": float(c1),
            "promised_1": gaussian_coverage(COVERAGE_K[0]),
            "coverage_2": float(c2),
            "promised_2": gaussian_coverage(COVERAGE_K[1]),
            "rho_image": spearman(img[:, 0], img[:, 1]),
            "rho_point": spearman(pts[:, 0], pts[:, 1]),
            "scale": math.sqrt(self._ratio_sum / self.n_points),
            "reliability": self._merged_bins(),
            "coverage_curve": {"k": _CURVE_K.tolist(), "observed": self.coverage(_CURVE_K).tolist(),
                               "promised": np.asarray(gaussian_coverage(_CURVE_K)).tolist()},
        }


def calibration_png(path, results, labels=None, title: str = "") -> None:
    """Draw the reliability curve (per-axis RMS error against RMS sigma per bin, log-log, the
    diagonal where they are equal) and the coverage curve (fraction of the points within k sigma
    against k, next to the Gaussian's ``1 - exp(-k^2/2)``) of one or more results of
    :meth:`CalibrationAccumulator.result` (``labels``: one per result)."""

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    from .files import write_figure

    results = [results] if isinstance(results, dict) else list(results)
    labels = [f"#{i}" for i in range(len(results))] if labels is None else [str(v) for v in labels]
    if len(labels) != len(results):
        raise InputError(f"{len(results)} result(s) but {len(labels)} label(s)")
    fig, (ax_r, ax_c) = plt.subplots(1, 2, figsize=(10, 4.4))
    lo, hi = np.inf, 0.0
    for res, label in zip(results, labels):
        rel = res["reliability"]
        x, y = np.asarray(rel["sigma_rms"]), np.asarray(rel["rms_error"])
        ok = (x > 0) & (y > 0)
        if ok.any():
            lo, hi = min(lo, x[ok].min(), y[ok].min()), max(hi, x[ok].max(), y[ok].max())
        ax_r.plot(x[ok], y[ok], "o-", ms=3, label=f"{label} (ML scale {res['scale']:.2f})")
        curve = res["coverage_curve"]
        ax_c.plot(curve["k"], curve["observed"], "-", label=label)
    if hi > 0:
        ax_r.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="calibrated")
        ax_r.set_xscale("log")
        ax_r.set_yscale("log")
        for axis in (ax_r.xaxis, ax_r.yaxis):    # minor labels of a short log range overlap
            axis.set_minor_formatter(NullFormatter())
    ax_r.set_xlabel("sigma (RMS in the bin, px)")
    ax_r.set_ylabel("observed RMS error per axis (px)")
    ax_r.set_title("reliability", fontsize=9)
    ax_r.legend(fontsize=7)
    k = np.linspace(0, 4, 161)
    ax_c.plot(k, gaussian_coverage(k), "k--", lw=0.8, label="Gaussian: 1 - exp(-k²/2)")
    ax_c.set_xlabel("k")
    ax_c.set_ylabel("fraction of points within k sigma")
    ax_c.set_ylim(0, 1)
    ax_c.set_title("coverage", fontsize=9)
    ax_c.legend(fontsize=7, loc="lower right")
    fig.suptitle(title or "calibration of the model's sigma", fontsize=9)
    write_figure(fig, path, dpi=110)
