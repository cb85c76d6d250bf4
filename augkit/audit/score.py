"""Scoring landmark labels: which label is most likely wrong, and how (numpy only; the runner that
trains the fold models and predicts out of fold is :mod:`augkit.audit.folds`).

Each image has a label ``L`` (K, 2), an out-of-fold prediction ``P`` (K, 2) from a model that never
saw ``L``, and the TTA spread ``S`` (K,) of that prediction. Lengths are in units of the face size
``d`` of the prediction (the distance between the scheme's ``norm`` points, else the diagonal of the
points' box), so images of any size compare. Three things can be wrong with a label, and each has
its own statistic, measured against what right labels show on the same set:

- **pose** (statistics ``shift`` and ``scale``): where and how large the label is against the
  prediction: the similarity transform (translation / d; log scale and rotation) that takes ``P``
  onto ``L``, less the model's typical bias over the set, divided by this image's own pose
  uncertainty: how far the TTA views disagree on the face's place, size and angle
  (:func:`pose_spread`; with one view, the model's typical pose error over the set, median and MAD).
  A whole-label shift or scaling stands out here, where the per-point noise of the model averages
  away, and a face the views disagree on is not blamed on its label.
- **fit** (``fit_all``, ``fit_top``): the shape of the label against the prediction once the best
  similarity has taken one onto the other: each point's residual divided by ``sqrt(sigma_k^2 +
  (S_k / d)^2)`` (``sigma_k`` the model's typical error on landmark k after the similarity, ``S_k``
  the views' disagreement on this image); the RMS over all points (a side swap, another face) and
  over the worst ``max(3, 5% of K)`` (a few points). When the fold models predict their own
  per-landmark uncertainty ``sigma`` (pixels, per image and landmark), it replaces ``sigma_k``: each
  residual is divided by ``sqrt((c_k sigma / d)^2 + (S_k / d)^2)``, ``c_k`` the set's robust ratio of
  the residual to ``sigma`` on landmark k (so a sigma off by a constant factor, or on some landmarks,
  does not matter; what counts is which images and points the model itself calls hard). A hard face
  whose points are all far off but within their sigma is then not blamed on its label, and a point
  of an easy face far beyond its sigma is.
- **shape** (``shape_top``): whether the label is a plausible face at all, without the model: the
  label aligned to the set's mean shape (rotation, scale and translation removed, generalised
  Procrustes) and projected onto the set's principal shape modes (those that hold 95% of the
  variance, at most 30); a point moved off the face leaves a residual that no combination of modes
  explains, relative to what right labels leave on that landmark. The worst ``max(3, 5% of K)``
  points' RMS. A side-swapped label is a mirrored face, which no rotation aligns: it stands out too.

Every statistic is fitted on the set itself (most labels are right), put on a scale where right
labels are near normal (the pose statistics, chi-like lengths in units of the image's own
uncertainty: ``t ** (2/3)``, Wilson-Hilferty; the fit and shape statistics, RMS values with heavy
tails: ``log t``) and in robust standard units ``(f(t) - median) / spread``, the spread matched at the
statistic's 95th percentile as for a normal law (so each statistic's tail over right labels counts the same); the
fit is made twice, the second time without the labels the first finds far off. The **score** is the
largest of the statistics, and a label is suspect above ``DEFAULT_THRESHOLD``. The calibration is
fitted once (:meth:`LabelAuditor.fit`, on all images or a sample), so any chunk of images is scored
on its own (:meth:`LabelAuditor.score`): streaming at any N.

The **kind** of a suspect: ``swap`` when re-indexing the label by the scheme's flip pairs makes the
fit at least twice as good; ``points`` when at most a quarter of the points are far off in the shape
statistic (``POINT_Z``) and the median point fits (named in ``points``, worst first); ``shift`` / ``scale`` when
the pose is off while the fit after the similarity is ordinary (named by which of the two moves the
points more); ``mismatch`` otherwise (no similarity makes it fit: another face's label).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from augkit.errors import InputError


__all__ = ["LabelAuditor", "AuditScore", "pose_spread", "STATS", "KINDS", "DEFAULT_THRESHOLD", "POINT_Z"]


# ------------------------------------------------------------------ shape geometry (numpy only)

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


# --------------------------------------------------------------------------------- the statistics

KINDS = ("swap", "shift", "scale", "mismatch", "points", "ok")
STATS = ("shift", "scale", "fit_all", "fit_top", "shape_top")   # the per-image statistics, in this order
DEFAULT_THRESHOLD = 4.5    # score (robust standard units over the set) above which a label is suspect
POINT_Z = 3.0              # a point this many typical errors off (model or shape) is named in `points`
_REFIT_Z = 4.0             # labels above this in any statistic are left out of the final fit of the set's statistics
_FIRST_Q, _TAIL_Q = 84.13, 95.0   # the percentile each statistic's spread is matched at: first fit, final fit
_ORDINARY_Z = 2.0          # a statistic below this (robust units) is what right labels show
_MAX_MODES, _VARIANCE = 30, 0.95
_POSE = [STATS.index("shift"), STATS.index("scale")]   # the statistics on the Wilson-Hilferty scale


@dataclass
class AuditScore:
    """One chunk of images. Shape: ``stats`` (B, len(STATS)) raw, ``z`` the same in robust units,
    ``score`` (B,); ``kind``/``points`` lists (the diagnosis if suspect, far-off points worst first);
    ``mse`` plain MSE in pixels and ``nme`` mean point error / face size, label vs prediction."""

    stats: np.ndarray
    z: np.ndarray
    score: np.ndarray
    kind: list
    points: list
    mse: np.ndarray
    nme: np.ndarray
    extra: dict = field(default_factory=dict)


class LabelAuditor:
    """The statistics of one set of labels and out-of-fold predictions (:meth:`fit`, once, on all
    images or a random sample), then the score and diagnosis of any chunk (:meth:`score`).

    Args:
        perm: the scheme's flip permutation (None, or the identity: no ``swap`` diagnosis).
        norm: the scheme's two norm points (None: the points' box diagonal is the face size).
    """

    def __init__(self, perm=None, norm=None):
        self.perm = None if perm is None else np.asarray(perm, np.int64)
        if self.perm is not None and np.array_equal(self.perm, np.arange(len(self.perm))):
            self.perm = None
        self.norm = None if norm is None else tuple(int(i) for i in norm)
        self.with_pose_sd = self.with_sigma = False

    # ------------------------------------------------------------------ the set's statistics
    def fit(self, labels, preds, spread, pose_sd=None, sigma=None) -> "LabelAuditor":
        """Fit every statistic on (N, K, 2) labels and predictions and (N, K) spread (finite rows),
        with the views' (N, 3) :func:`pose_spread` when there is one, and the models' own (N, K)
        ``sigma`` in pixels when they predict one (then :meth:`score` needs each of them too).
        Twice: first with each statistic's spread matched at its 84th percentile, then without the
        labels that fit finds far off (``_REFIT_Z``), the spread matched at the 95th."""
        lab, pr = np.asarray(labels, np.float64), np.asarray(preds, np.float64)
        sp = np.asarray(spread, np.float64)
        self.with_pose_sd = pose_sd is not None
        self.with_sigma = sigma is not None
        ps = np.asarray(pose_sd, np.float64) if pose_sd is not None else np.zeros((len(lab), 3))
        if len(lab) < 2:
            raise InputError(f"{len(lab)} readable image(s) with predictions: an audit needs at least 2")
        sg = self._check_sigma(sigma, sp.shape) if sigma is not None else np.full(sp.shape, np.nan)
        self.k = lab.shape[1]
        self.top = max(3, int(np.ceil(0.05 * self.k)))
        self._fit_once(lab, pr, sp, ps, _FIRST_Q, sg)
        keep = (self._z(self._scaled_stats(lab, pr, sp, ps, sg)) < _REFIT_Z).all(axis=1)
        if keep.sum() >= max(2, len(lab) // 2):   # else most labels look wrong: keep the first fit
            self._fit_once(lab[keep], pr[keep], sp[keep], ps[keep], _TAIL_Q, sg[keep])
        return self

    @staticmethod
    def _check_sigma(sigma, shape) -> np.ndarray:
        sg = np.asarray(sigma, np.float64)
        if sg.shape != shape:
            raise InputError(f"sigma must be (images, points) = {shape}, got {sg.shape}")
        return sg

    def _fit_sigma_scale(self, zl, zp, d, sg) -> None:
        """With the models' sigma: per landmark, its typical value (face units; stands in for a
        missing one), a floor (a tenth of that: no division by ~0) and the factor ``c_k`` that
        makes ``c_k sigma`` the landmark's typical residual after the similarity (``1.2 x median``
        of residual / sigma, as ``fit_sigma``)."""
        u = sg / d[:, None]
        good = np.isfinite(u) & (u > 0)
        um = np.where(good, u, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)    # a landmark without any sigma: NaN, replaced below
            typical = np.nanmedian(um, axis=0) if good.any() else np.full(self.k, np.nan)
        fallback = float(np.nanmedian(um)) if good.any() else 1.0
        self.sigma_typical = np.where(np.isfinite(typical), typical, fallback)
        self.sigma_floor = np.maximum(0.1 * self.sigma_typical, 1e-9)
        ratio = _chunked(lambda a, b, s, w: np.abs(_similarity(a, b)[0] - b) / s[:, None] / self._sigma_units(w),
                         zl, zp, d, u)
        self.sigma_scale = np.maximum(1.2 * np.median(ratio, axis=0), 1e-6)

    def _sigma_model(self, sg: np.ndarray, d: np.ndarray) -> np.ndarray:
        """The model's error scale on each point from its sigma, face units: ``c_k sigma / d``,
        a missing sigma replaced and a tiny one floored. Shape: (B, K)."""
        return self.sigma_scale[None] * self._sigma_units(sg / d[:, None])

    def _sigma_units(self, u: np.ndarray) -> np.ndarray:
        """The models' sigma in face units (B, K), a missing one replaced by the landmark's typical
        value and every one kept above the floor."""
        u = np.where(np.isfinite(u) & (u > 0), u, self.sigma_typical[None])
        return np.maximum(u, self.sigma_floor[None])

    def _fit_once(self, lab, pr, sp, ps, q, sg):
        d = _face_size(pr, self.norm)
        zl, zp = _c(lab), _c(pr)
        # shape prior: generalised Procrustes mean, then principal modes of the aligned shapes
        mean = _normalised(zl[:1])[0] if len(zl) == 1 else _normalised(np.median(zl, axis=0)[None])[0]
        chunks = range(0, len(zl), FIT_CHUNK)
        for _ in range(3):
            total = sum(self._align(zl[i:i + FIT_CHUNK], mean).sum(axis=0) for i in chunks)
            mean = _normalised((total / len(zl))[None])[0]
        self.mean_shape = mean
        cov = np.zeros((2 * self.k, 2 * self.k))
        for i in chunks:
            x = self._flat(self._align(zl[i:i + FIT_CHUNK], mean) - mean)
            cov += x.T @ x
        val, vec = np.linalg.eigh(cov / len(zl))
        val, vec = val[::-1], vec[:, ::-1]
        share = np.cumsum(val) / max(val.sum(), 1e-300)
        m = int(min(_MAX_MODES, np.searchsorted(share, _VARIANCE) + 1, max(1, len(zl) - 1)))
        self.modes = vec[:, :m]
        self.shape_sigma = np.maximum(1.2 * np.median(_chunked(
            lambda z: self._shape_residual(z, robust=False), zl), axis=0), 1e-6)
        # model residual after the similarity, per landmark
        self.fit_sigma = np.maximum(1.2 * np.median(_chunked(
            lambda a, b, s: np.abs(_similarity(a, b)[0] - b) / s[:, None], zl, zp, d), axis=0), 1e-6)
        # the model's pose error: robust centre and scale of each similarity parameter
        pose = _chunked(self._pose, zl, zp, d)
        self.pose_centre, self.pose_scale = _robust(pose)
        # a floor under the views' pose spread (a tenth of its median): no division by ~0
        self.pose_floor = np.maximum(0.1 * np.median(ps, axis=0), 1e-9)
        if self.with_sigma:
            self._fit_sigma_scale(zl, zp, d, sg)
            # the model's pose error per unit of the image's sigma level (robust, about the same centre)
            level = self._sigma_model(sg, d)
            level = np.sqrt((level ** 2).mean(axis=1))
            self.pose_sigma = np.maximum(1.4826 * np.median(np.abs(pose - self.pose_centre) / level[:, None], axis=0),
                                         1e-9)
        self.stat_centre, self.stat_scale = _upper(self._scaled_stats(lab, pr, sp, ps, sg), q)

    def _scaled_stats(self, lab, pr, sp, ps, sg) -> np.ndarray:
        """Each image's statistics on :meth:`_transform`'s scale, ``FIT_CHUNK`` images at a time.
        Shape: (N, len(STATS))."""
        return _chunked(lambda *a: self._transform(self._stats(*a)["stats"]), lab, pr, sp, ps, sg)

    def _z(self, scaled: np.ndarray) -> np.ndarray:
        """Transformed statistics in the set's robust standard units. Shape: (N, len(STATS))."""
        return (scaled - self.stat_centre) / self.stat_scale

    @staticmethod
    def _transform(stats: np.ndarray) -> np.ndarray:
        """The scale each statistic is put in robust standard units on. Shape: (B, len(STATS)).

        The pose statistics are the length of a 2-vector in units of the image's own uncertainty:
        over right labels about a chi with 2 degrees of freedom, whose square's cube root is close
        to normal (Wilson-Hilferty), so ``t ** (2/3)``. The fit and shape statistics are RMS values
        of many residuals with heavy tails (real labels have their oddities): their log."""
        out = np.log(np.maximum(stats, 1e-12))
        out[:, _POSE] = np.maximum(stats[:, _POSE], 0.0) ** (2.0 / 3.0)
        return out

    @staticmethod
    def _align(z: np.ndarray, ref: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
        """Each shape rotated and scaled onto ``ref`` (unit RMS radius, centred) with weights ``w``
        (B, K) on the points: centred on its weighted mean, scaled to the weighted RMS radius of
        ``ref`` (not least squares, which would shrink a shape that fits badly), rotated by the
        weighted least-squares angle, put on ``ref``'s weighted mean. Shape: (B, K) complex."""
        w = np.ones(z.shape) if w is None else w
        w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
        zc = z - (w * z).sum(axis=1, keepdims=True)
        ref_mean = (w * ref[None]).sum(axis=1, keepdims=True)
        rc = ref[None] - ref_mean
        scale = np.sqrt((w * np.abs(rc) ** 2).sum(axis=1, keepdims=True)
                        / np.maximum((w * np.abs(zc) ** 2).sum(axis=1, keepdims=True), 1e-300))
        rot = (w * np.conj(zc) * rc).sum(axis=1, keepdims=True)
        return zc * scale * rot / np.maximum(np.abs(rot), 1e-300) + ref_mean

    @staticmethod
    def _flat(z: np.ndarray) -> np.ndarray:
        return np.concatenate([z.real, z.imag], axis=1)

    def _shape_residual(self, zl: np.ndarray, robust: bool = True) -> np.ndarray:
        """Per point, how far the label is from the best combination of the set's shape modes
        (units of the shape's RMS radius). ``robust``: aligned and projected a second time with the
        points the first pass puts over ``POINT_Z`` left out, so a few moved points neither turn the
        alignment nor leak into the others' residuals. Shape: (B, K)."""
        x = self._flat(self._align(zl, self.mean_shape) - self.mean_shape[None])
        r = x - (x @ self.modes) @ self.modes.T
        res = np.hypot(r[:, :self.k], r[:, self.k:])
        if not robust:
            return res
        w = (res / self.shape_sigma <= POINT_Z).astype(np.float64)
        redo = (w.sum(axis=1) >= self.k / 2) & (w.sum(axis=1) < self.k)   # a few points far off
        if not redo.any():
            return res
        wr = w[redo]
        x = self._flat(self._align(zl[redo], self.mean_shape, wr) - self.mean_shape[None])
        w2 = np.concatenate([wr, wr], axis=1)
        gram = np.einsum("km,bk,kn->bmn", self.modes, w2, self.modes)
        coef = np.linalg.solve(gram + 1e-9 * np.eye(gram.shape[1]), ((w2 * x) @ self.modes)[..., None])[..., 0]
        r = x - coef @ self.modes.T
        res[redo] = np.hypot(r[:, :self.k], r[:, self.k:])
        return res

    def _pose(self, zl, zp, d) -> np.ndarray:
        """(tx / d, ty / d, log scale, rotation) of the similarity taking the prediction onto the
        label. Shape: (B, 4)."""
        _, c, ms, md = _similarity(zp, zl)
        t = (md - ms) / d
        return np.stack([t.real, t.imag, np.log(np.maximum(np.abs(c), 1e-12)), np.angle(c)], axis=1)

    # ------------------------------------------------------------------ per chunk
    def _stats(self, lab, pr, sp, ps, sg) -> dict:
        d = _face_size(pr, self.norm)
        zl, zp = _c(lab), _c(pr)
        # the model's own error scale on each point: its sigma (scaled to the set) or the landmark's typical error
        model = self._sigma_model(sg, d) if self.with_sigma else self.fit_sigma[None]
        s_eff = np.sqrt(model ** 2 + (np.nan_to_num(sp) / d[:, None]) ** 2)

        def fit_z(candidate):
            mapped = _similarity(candidate, zp, 1.0 / s_eff ** 2)[0]
            return np.abs(mapped - zp) / d[:, None] / s_eff

        zf = fit_z(zl)
        pose_raw = self._pose(zl, zp, d)
        pose = pose_raw - self.pose_centre
        if self.with_sigma:     # the pose error the model's sigma implies: its typical one x this image's sigma level
            pose_model = self.pose_sigma[None] * np.sqrt((model ** 2).mean(axis=1))[:, None]
        if self.with_pose_sd and self.with_sigma:   # and how far the views disagree, per parameter
            sd = np.sqrt(ps ** 2 + self.pose_floor ** 2)[:, [0, 0, 1, 2]] / (np.sqrt(2), np.sqrt(2), 1, 1)
            pose = pose / np.sqrt(sd ** 2 + pose_model ** 2)
        elif self.with_pose_sd:   # in units of this image's own pose uncertainty: how far its views disagree
            sd = np.sqrt(ps ** 2 + self.pose_floor ** 2)
            pose = pose / sd[:, [0, 0, 1, 2]] * (np.sqrt(2), np.sqrt(2), 1, 1)   # sd[:, 0] is of both axes
        elif self.with_sigma:   # in units of the pose error the model's sigma implies for this image
            pose = pose / pose_model
        else:                   # in units of the model's typical pose error over the set
            pose = pose / self.pose_scale
        zs = self._shape_residual(zl, robust=False) / self.shape_sigma
        stats = np.stack([np.hypot(pose[:, 0], pose[:, 1]), np.hypot(pose[:, 2], pose[:, 3]),
                          np.sqrt((zf ** 2).mean(axis=1)),
                          _top_rms(zf, self.top), _top_rms(zs, self.top)], axis=1)
        radius = np.sqrt((np.abs(zp - zp.mean(axis=1, keepdims=True)) ** 2).mean(axis=1)) / d
        out = {"stats": stats, "zf": zf, "zs": zs, "pose": pose, "d": d, "radius": radius,
               "pose_raw": pose_raw}
        if self.perm is not None:
            out["swap_fit"] = np.sqrt((fit_z(zl[:, self.perm]) ** 2).mean(axis=1))
        return out

    def _raw(self, lab, pr, sp, ps, sg) -> dict:
        out = self._stats(lab, pr, sp, ps, sg)
        out["z"] = self._z(self._transform(out["stats"]))
        return out

    def score(self, labels, preds, spread, pose_sd=None, threshold: float = DEFAULT_THRESHOLD,
              sigma=None) -> AuditScore:
        """Score and diagnose a chunk: (B, K, 2) labels and predictions in pixels, (B, K) spread,
        (B, 3) :func:`pose_spread` if the fit had one, (B, K) the models' ``sigma`` (pixels) if the
        fit had it."""
        lab, pr = np.asarray(labels, np.float64), np.asarray(preds, np.float64)
        sp = np.asarray(spread, np.float64)
        if self.with_pose_sd and pose_sd is None:
            raise InputError("the auditor was fitted with the views' pose spread: score needs it too")
        if self.with_sigma and sigma is None:
            raise InputError("the auditor was fitted with the models' sigma: score needs it too")
        if not self.with_sigma and sigma is not None:
            raise InputError("the auditor was fitted without the models' sigma: fit it with sigma to score with it")
        ps = np.asarray(pose_sd, np.float64) if pose_sd is not None else np.zeros((len(lab), 3))
        sg = self._check_sigma(sigma, sp.shape) if sigma is not None else np.full(sp.shape, np.nan)
        r = self._raw(lab, pr, sp, ps, sg)
        z = r["z"]
        score = z.max(axis=1)
        err = np.linalg.norm(lab - pr, axis=-1)
        kinds: list[str] = ["ok"] * len(lab)
        far: list[list[int]] = [[] for _ in range(len(lab))]
        i_all = STATS.index("fit_all")
        for i in np.flatnonzero(score > threshold):
            point_z = self._shape_residual(_c(lab[i:i + 1]))[0] / self.shape_sigma   # robust: a few points off
            bad = np.flatnonzero(point_z > POINT_Z)
            if self.perm is not None and r["swap_fit"][i] < 0.5 * r["stats"][i, i_all]:
                kinds[i] = "swap"
            elif 0 < len(bad) <= max(1, self.k // 4) and np.median(point_z) < 1.5 and z[i, i_all] < z[i].max():
                kinds[i], far[i] = "points", bad[np.argsort(-point_z[bad])].tolist()
            elif z[i, :2].max() >= threshold and z[i, i_all] < _ORDINARY_Z:
                # which moves the points more: the translation, or the scaling about the centre
                shift = np.hypot(*r["pose_raw"][i, :2])
                scale = abs(np.expm1(r["pose_raw"][i, 2]))
                kinds[i] = "scale" if scale * r["radius"][i] > shift else "shift"
            else:
                kinds[i] = "mismatch"
        return AuditScore(r["stats"], z, score, kinds, far, np.mean((lab - pr) ** 2, axis=(1, 2)),
                          err.mean(axis=1) / r["d"])
