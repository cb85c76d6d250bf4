"""Fitting merge weights on validation data.

The merged error is ``sum_m w_m r_m`` (``r_m`` = member m's residual; the weights sum to one), so the
mean squared error of any weights is ``w^T G w`` with ``G`` the Gram matrix of the residuals. The
fit minimises it over non-negative weights that sum to one (an exact NNLS solve with the sum as a
heavily weighted extra row):

- per member (models x views): one ``G`` over all images, landmarks and coordinates;
- per member and landmark: one ``G_k`` per landmark plus a ridge ``lam * mean(diag G_k) * |w - w0|^2``
  pulling toward the per-member weights ``w0`` (shrinkage); ``lam`` is chosen by k-fold
  cross-validation over images (``lam = inf`` is the per-member fit itself).

MSE here is the competition's: the mean over images, points and both coordinates of the squared
error, in original pixels.

Only the Gram matrices are needed, so :class:`FitAccumulator` sums them chunk by chunk (per fold
and landmark) and never holds the members of more than one chunk; :func:`fit_weights` is one
``add`` of all rows. Folds are a function of an image's position in the full list
(:func:`fold_of`), so a stream assigns them without knowing which images will turn out unreadable.

Merges without fitted parameters (:class:`Candidate`: no TTA = the identity view(s) alone, the
plain mean, ``robust``, ``sigma``, ``sigma+robust``) are not linear in the residuals: for them
:class:`MergeAccumulator` merges each chunk by each candidate and sums the squared errors per fold
(same folds, same skipped folds as :class:`FitAccumulator`, so every cross-validated MSE of
``augkit tta fit`` is over the same images), plus the sums of the σ calibration
(:meth:`MergeAccumulator.sigma_scale`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from augkit.errors import InputError

__all__ = [
    "LAMBDAS",
    "Candidate",
    "FitAccumulator",
    "MergeAccumulator",
    "FitResult",
    "fit_report_lines",
    "fit_weights",
    "fold_of",
    "simplex_qp",
    "simplex_qp_batch",
]

LAMBDAS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, float("inf"))


def simplex_qp(gram, target=None, lam: float = 0.0) -> np.ndarray:
    """``argmin w^T G w + lam * s * |w - target|^2`` over ``w >= 0, sum w = 1`` (``s`` = mean of
    diag G, so ``lam`` has no units). Shape: ``gram (M, M) -> (M,)``."""
    from scipy.linalg import cholesky, solve_triangular
    from scipy.optimize import nnls

    g = np.asarray(gram, dtype=np.float64)
    m = g.shape[0]
    if m == 1:
        return np.ones(1)
    s = max(float(np.trace(g)) / m, 1e-300)
    if np.isinf(lam):
        return np.asarray(target, dtype=np.float64).copy()
    a = g / s + (lam + 1e-9) * np.eye(m)          # scaled: better conditioned, same argmin
    lin = np.zeros(m) if (target is None or lam == 0) else lam * np.asarray(target, dtype=np.float64)
    u = cholesky(a, lower=False)                   # a = u^T u
    c = solve_triangular(u, lin, trans="T")        # u^T c = lin  ->  |u w - c|^2 = w^T a w - 2 lin.w + const
    big = 1e4
    w, _ = nnls(np.vstack([u, big * np.ones((1, m))]), np.concatenate([c, [big]]), maxiter=50 * m)
    tot = w.sum()
    return w / tot if tot > 0 else np.full(m, 1.0 / m)


@dataclass
class FitResult:
    """Fitted weights and the validation numbers that justify them (MSE, original pixels).

    ``per_view``: (M,) weights; ``per_landmark``: (M, K); ``lam``: the chosen shrinkage.
    ``cv``: cross-validated MSE of ``plain`` (equal weights), ``per_view`` and ``per_landmark``.
    ``solo``: (M,) MSE of each member alone; ``drop_one``: (M,) increase of the plain average's MSE
    when the member is left out (its gain); ``in_sample``: MSE of plain/per_view/per_landmark on all data.
    """

    per_view: np.ndarray
    per_landmark: np.ndarray
    lam: float
    cv: dict
    solo: np.ndarray
    drop_one: np.ndarray
    in_sample: dict
    cv_by_lam: dict = field(default_factory=dict)

    @property
    def best(self) -> str:
        return "per_landmark" if self.cv["per_landmark"] < self.cv["per_view"] else "per_view"


def fold_of(index, n_images: int, folds: int, seed: int = 0) -> np.ndarray:
    """Cross-validation fold of each image, from its position in the full list of ``n_images``.

    ``order = default_rng(seed).permutation(n_images)``; the image at ``order[j]`` goes to fold
    ``j % nf`` with ``nf = min(folds, n_images)``. Unreadable or unlabelled images keep their
    slot, so folds may end up uneven (or empty, and are then skipped). Shape: ``(B,) -> (B,)``.
    """
    nf = max(1, min(int(folds), int(n_images)))
    order = np.random.default_rng(seed).permutation(int(n_images))
    out = np.empty(int(n_images), dtype=np.int64)
    out[order] = np.arange(int(n_images)) % nf
    return out[np.asarray(index, dtype=np.int64)]


def _mse(w, g, cnt) -> float:
    """MSE of weights w ((M,) or (M, K)) from summed Grams g (K, M, M) and counts (K,)."""
    w = np.broadcast_to(w[:, None], (g.shape[1], g.shape[0])) if w.ndim == 1 else w
    return float(np.einsum("mk,kmu,uk->", w, g, w) / max(cnt.sum(), 1))


# members up to which the per-landmark fit enumerates supports (2^M - 1 of them) in one batch
BATCH_MEMBERS = 5


def simplex_qp_batch(grams, target, lam: float) -> np.ndarray:
    """:func:`simplex_qp` for many Gram matrices at once, exactly: for every support S (a subset of
    the members) the equality-constrained minimum on S is one batched linear solve; the answer of
    each problem is the lowest-objective one that is non-negative (the problem is convex, so the
    optimum's own support gives it). Shape: ``grams (K, M, M), target (M,) -> (K, M)``. For M up
    to :data:`BATCH_MEMBERS`; 2^M - 1 supports, each a solve over all K problems."""
    g = np.asarray(grams, dtype=np.float64)
    k, m = g.shape[0], g.shape[1]
    t = np.asarray(target, dtype=np.float64)
    if m == 1:
        return np.ones((k, 1))
    if np.isinf(lam):
        return np.broadcast_to(t, (k, m)).copy()
    s = np.maximum(np.trace(g, axis1=1, axis2=2) / m, 1e-300)
    a = g / s[:, None, None] + (lam + 1e-9) * np.eye(m)
    lin = np.zeros(m) if lam == 0 else lam * t
    best_w = np.full((k, m), 1.0 / m)
    best_f = np.full(k, np.inf)
    for mask in range(1, 2 ** m):
        sup = np.array([i for i in range(m) if mask >> i & 1])
        n = len(sup)
        kkt = np.zeros((k, n + 1, n + 1))
        kkt[:, :n, :n] = 2 * a[:, sup[:, None], sup[None, :]]
        kkt[:, :n, n] = kkt[:, n, :n] = 1.0
        rhs = np.broadcast_to(np.concatenate([2 * lin[sup], [1.0]]), (k, n + 1))[..., None]
        ws = np.linalg.solve(kkt, rhs)[..., 0][:, :n]
        ok = (ws >= -1e-12).all(axis=1)
        w = np.zeros((k, m))
        w[:, sup] = np.maximum(ws, 0)
        f = np.einsum("ki,kij,kj->k", w, a, w) - 2 * w @ lin
        better = ok & (f < best_f - 1e-15)
        best_w[better], best_f[better] = w[better], f[better]
    return best_w / best_w.sum(axis=1, keepdims=True)


def _fit(g, cnt, lams):
    """Per-member weights and, for each lam, per-landmark weights (M, K) from Grams (K, M, M)."""
    total = g.sum(axis=0) / max(cnt.sum(), 1)
    w0 = simplex_qp(total)
    out = {}
    used = cnt > 0
    gk = g / np.maximum(cnt, 1)[:, None, None]
    for lam in lams:
        wk = np.repeat(w0[:, None], g.shape[0], axis=1)
        if g.shape[1] <= BATCH_MEMBERS:
            wk[:, used] = simplex_qp_batch(gk[used], w0, lam).T
        else:
            for k in np.flatnonzero(used):
                wk[:, k] = simplex_qp(gk[k], w0, lam)
        out[lam] = wk
    return w0, out


class FitAccumulator:
    """Sufficient statistics of the weight fit, accumulated chunk by chunk.

    Holds per fold the per-landmark Gram matrices of the member residuals (``folds x K x M x M``
    float64) and the number of squared terms behind them (``folds x K``), plus one byte per image
    for its fold and one flag per image that catches an image added twice. Nothing grows with the
    number of members' predictions seen.

    Args:
        n_members: M, members per image (models x views).
        n_points: K, landmarks per image.
        n_images: every image that will be offered, readable or not (folds depend on it).
        per_landmark: as in :func:`fit_weights`.
        lambdas: as in :func:`fit_weights`.
        folds: as in :func:`fit_weights`.
        seed: as in :func:`fit_weights`.
    """

    def __init__(self, n_members: int, n_points: int, n_images: int, per_landmark: bool = True,
                 lambdas=LAMBDAS, folds: int = 5, seed: int = 0):
        if n_members < 1 or n_points < 1:
            raise InputError(f"weight fitting needs at least one member and one point, got {n_members} "
                             f"member(s) and {n_points} point(s)")
        if folds < 2:
            raise InputError(f"cross-validation needs at least 2 folds, got {folds}")
        if n_images < 0:
            raise InputError(f"n_images must be >= 0, got {n_images}")
        self.n_members, self.n_points, self.n_images = int(n_members), int(n_points), int(n_images)
        self.lambdas = tuple(float(x) for x in lambdas) if per_landmark else (float("inf"),)
        if not self.lambdas:
            raise InputError("lambdas is empty: give at least one shrinkage value")
        self.n_folds = max(1, min(int(folds), self.n_images))
        self._fold = fold_of(np.arange(self.n_images), self.n_images, self.n_folds, seed).astype(
            np.uint8 if self.n_folds < 256 else np.int32)
        self._seen = np.zeros(self.n_images, dtype=bool)
        self.gram = np.zeros((self.n_folds, self.n_points, self.n_members, self.n_members))
        self.count = np.zeros((self.n_folds, self.n_points))
        self.n_offered = 0          # rows passed to add
        self.n_usable = 0           # rows with predictions and at least one labelled point

    def add(self, members, truth, index) -> None:
        """Add one chunk.

        Args:
            members: (B, M, K, 2) member predictions in original pixels; a row with any NaN is an
                unreadable image and is left out.
            truth: (B, K, 2) true points; NaN points are left out.
            index: (B,) positions of these images in the full list, in ``[0, n_images)``.
        """
        p, t, idx = self._check(members, truth, index)
        self._seen[idx] = True
        self.n_offered += len(idx)
        keep = np.isfinite(p).all(axis=(1, 2, 3))
        p, t, idx = p[keep], t[keep], idx[keep]
        mask = np.isfinite(t).all(axis=-1)                       # (B, K)
        self.n_usable += int(mask.any(axis=1).sum())
        if not mask.any():
            return
        r = np.where(mask[:, None, :, None], p - np.where(np.isfinite(t), t, 0.0)[:, None], 0.0)
        fold = self._fold[idx]
        for f in np.unique(fold):
            sel = fold == f
            rk = r[sel].transpose(2, 1, 0, 3).reshape(self.n_points, self.n_members, -1)   # (K, M, b*2)
            self.gram[f] += rk @ rk.transpose(0, 2, 1)
            self.count[f] += 2.0 * mask[sel].sum(axis=0)

    def _check(self, members, truth, index):
        p = np.asarray(members, dtype=np.float64)
        t = np.asarray(truth, dtype=np.float64)
        idx = np.asarray(index)
        m, k = self.n_members, self.n_points
        if p.ndim != 4 or p.shape[3] != 2:
            raise InputError(f"members must be one (members, points, x/y) array per image, i.e. 4-D with "
                             f"x/y last; got a {p.ndim}-D array" + (f" ending in {p.shape[-1]}" if p.ndim else ""))
        b = p.shape[0]
        if p.shape[1] != m:
            raise InputError(f"expected {m} members per image, got {p.shape[1]}")
        if p.shape[2] != k:
            raise InputError(f"the members predict {p.shape[2]} points but {k} were expected")
        if t.ndim != 3 or t.shape[2] != 2:
            raise InputError(f"truth must be (points, x/y) per image, i.e. 3-D with x/y last; got a {t.ndim}-D array")
        if t.shape[1] != k:
            raise InputError(f"the members predict {k} points but the labels have {t.shape[1]}")
        if t.shape[0] != b or idx.shape != (b,):
            raise InputError(f"members, truth and index must cover the same images: got {b} rows of members, "
                             f"{t.shape[0]} of truth and {idx.size} indices")
        if b and not np.issubdtype(idx.dtype, np.integer):
            raise InputError(f"index must hold integer image positions, got {idx.dtype}")
        idx = idx.astype(np.int64)
        if b and (idx.min() < 0 or idx.max() >= self.n_images):
            bad = idx[(idx < 0) | (idx >= self.n_images)][0]
            raise InputError(f"image position {bad} is outside the {self.n_images} images announced")
        if len(np.unique(idx)) != b or self._seen[idx].any():
            raise InputError(f"image position {_first_repeat(idx, self._seen)} was added twice")
        return p, t, idx

    def result(self) -> FitResult:
        """The fit on everything added so far: the same :class:`FitResult` as :func:`fit_weights`."""
        if self.n_usable < 2:
            raise InputError(_too_few(self.n_usable, self.n_offered))
        m, lams = self.n_members, self.lambdas
        g, cnt = self.gram.sum(axis=0), self.count.sum(axis=0)
        plain = np.full(m, 1.0 / m)
        sse: dict[str | float, float] = {"plain": 0.0, "per_view": 0.0, **{lam: 0.0 for lam in lams}}
        tot = 0.0
        for f in range(self.n_folds):
            g_te, c_te = self.gram[f], self.count[f]
            s = c_te.sum()
            if s == 0 or s == cnt.sum():            # empty test or training side: fold skipped
                continue
            others = [i for i in range(self.n_folds) if i != f]
            g_tr, c_tr = self.gram[others].sum(axis=0), self.count[others].sum(axis=0)
            w0, wl = _fit(g_tr, c_tr, lams)
            tot += s
            sse["plain"] += _mse(plain, g_te, c_te) * s
            sse["per_view"] += _mse(w0, g_te, c_te) * s
            for lam in lams:
                sse[lam] += _mse(wl[lam], g_te, c_te) * s
        if tot > 0:
            cv_lam = {lam: sse[lam] / tot for lam in lams}
            best_lam = min(lams, key=lambda lam: (cv_lam[lam], -lam))
        else:                                         # all labelled images in one fold: nothing to validate
            cv_lam = {lam: float("nan") for lam in lams}
            best_lam = max(lams)
        w0, wl = _fit(g, cnt, (best_lam,))
        w_land = wl[best_lam]
        solo = np.array([_mse(np.eye(m)[i], g, cnt) for i in range(m)])
        full_plain = _mse(plain, g, cnt)
        drop = np.zeros(m)
        if m > 1:
            for i in range(m):
                w = np.full(m, 1.0 / (m - 1))
                w[i] = 0.0
                drop[i] = _mse(w, g, cnt) - full_plain
        cv = ({"plain": sse["plain"] / tot, "per_view": sse["per_view"] / tot} if tot > 0
              else {"plain": float("nan"), "per_view": float("nan")})
        cv["per_landmark"] = cv_lam[best_lam]
        return FitResult(
            per_view=w0, per_landmark=w_land, lam=best_lam, cv=cv, solo=solo, drop_one=drop,
            in_sample={"plain": full_plain, "per_view": _mse(w0, g, cnt), "per_landmark": _mse(w_land, g, cnt)},
            cv_by_lam=cv_lam)


def _first_repeat(idx: np.ndarray, seen: np.ndarray) -> int:
    before = idx[seen[idx]]
    if before.size:
        return int(before[0])
    u, c = np.unique(idx, return_counts=True)
    return int(u[c > 1][0])


def _too_few(usable: int, offered: int) -> str:
    msg = f"weight fitting needs at least 2 images with predictions and labels, got {usable}"
    if offered == 0:
        return msg + ": no image was given"
    if usable == 0:
        return msg + f": all {offered} images were unreadable or unlabelled"
    return msg + f" ({offered - usable} of {offered} images were unreadable or unlabelled)"


def fit_weights(members, truth, per_landmark: bool = True, lambdas=LAMBDAS, folds: int = 5,
                seed: int = 0) -> FitResult:
    """Fit merge weights on validation predictions (all in memory; see :class:`FitAccumulator`).

    Args:
        members: (N, M, K, 2) member predictions in original pixels (rows with NaN are left out).
        truth: (N, K, 2) true points (NaN points are left out).
        per_landmark: also fit per-landmark weights (with shrinkage chosen by cross-validation).
        lambdas: shrinkage values tried.
        folds: cross-validation folds over images, assigned by :func:`fold_of` over all N rows
            (at most N folds; folds without labelled images are skipped).
    """
    p = np.asarray(members)
    if p.ndim != 4:
        raise InputError(f"members must be (images, members, points, x/y), a 4-D array; got {p.ndim}-D")
    acc = FitAccumulator(p.shape[1], p.shape[2], p.shape[0], per_landmark=per_landmark, lambdas=lambdas,
                         folds=folds, seed=seed)
    acc.add(p, truth, np.arange(p.shape[0]))
    return acc.result()


@dataclass(frozen=True)
class Candidate:
    """A merge without fitted parameters that ``augkit tta fit`` compares: ``method`` (see
    :mod:`augkit.tta.merge`) over the members ``members`` (indices; None: all) with equal base
    weights. ``name``: its row in the report (``none``, ``plain``, ``robust``, ``sigma``, ...)."""

    name: str
    method: str = "mean"
    members: tuple | None = None


class MergeAccumulator:
    """Per-fold sums of squared error of fixed merges (:class:`Candidate`), chunk by chunk.

    Holds ``folds x candidates`` sums of squared errors, ``folds`` counts of squared terms (as
    :class:`FitAccumulator`: two per labelled point) and per candidate the sums of the σ
    calibration; nothing grows with the images seen. Folds: :func:`fold_of`, as
    :class:`FitAccumulator` with the same ``n_images``, ``folds`` and ``seed``.
    """

    def __init__(self, candidates, n_members: int, n_points: int, n_images: int, folds: int = 5, seed: int = 0):
        self.candidates = list(candidates)
        if not self.candidates:
            raise InputError("candidates is empty: give at least one merge to compare")
        names = [c.name for c in self.candidates]
        if len(set(names)) != len(names):
            raise InputError(f"candidate names must differ, got {names}")
        for c in self.candidates:
            if c.members is not None and (not c.members or min(c.members) < 0 or max(c.members) >= n_members):
                raise InputError(f"candidate {c.name!r}: members must be indices in 0..{n_members - 1}, got {c.members}")
        self.n_members, self.n_points, self.n_images = int(n_members), int(n_points), int(n_images)
        self.n_folds = max(1, min(int(folds), self.n_images))
        self._fold = fold_of(np.arange(self.n_images), self.n_images, self.n_folds, seed)
        self.sse = np.zeros((self.n_folds, len(self.candidates)))
        self.count = np.zeros(self.n_folds)
        self.calib = np.zeros((len(self.candidates), 2))      # sum |err|^2 / (2 sigma^2), points

    def add(self, members, truth, index, sigma=None) -> None:
        """Add one chunk: ``members`` (B, M, K, 2), ``truth`` (B, K, 2), ``index`` (B,) positions in
        the full list, ``sigma`` (B, M, K) member σ or None (then the σ candidates are refused).
        Rows with a NaN member and NaN true points are left out, as by :class:`FitAccumulator`."""
        p = np.asarray(members, dtype=np.float64)
        t = np.asarray(truth, dtype=np.float64)
        idx = np.asarray(index, dtype=np.int64)
        if p.ndim != 4 or p.shape[1:] != (self.n_members, self.n_points, 2):
            raise InputError(f"members must have shape (B, {self.n_members}, {self.n_points}, 2), got {p.shape}")
        if t.shape != (p.shape[0], self.n_points, 2) or idx.shape != (p.shape[0],):
            raise InputError(f"truth must have shape ({p.shape[0]}, {self.n_points}, 2) and index ({p.shape[0]},), "
                             f"got {t.shape} and {idx.shape}")
        keep = np.isfinite(p).all(axis=(1, 2, 3))
        sig = None
        if sigma is not None:
            sig = np.asarray(sigma, dtype=np.float64)
            if sig.shape != p.shape[:3]:
                raise InputError(f"sigma must have shape {p.shape[:3]}, got {sig.shape}")
            sig = sig[keep]
        p, t, idx = p[keep], t[keep], idx[keep]
        mask = np.isfinite(t).all(axis=-1)                          # (B, K)
        assert isinstance(mask, np.ndarray)                         # t is (B, K, 2): an array, never a scalar
        if not mask.any():
            return
        tt = np.where(mask[..., None], t, 0.0)
        fold = self._fold[idx]
        self.count += np.bincount(fold, weights=2.0 * mask.sum(axis=1), minlength=self.n_folds)
        from .merge import merge_with_sigma
        for j, c in enumerate(self.candidates):
            sel = slice(None) if c.members is None else list(c.members)
            s_c = None if sig is None else sig[:, sel]
            merged, msig = merge_with_sigma(p[:, sel], s_c, None, c.method)
            err2 = np.where(mask, ((merged - tt) ** 2).sum(axis=-1), 0.0)   # (B, K)
            self.sse[:, j] += np.bincount(fold, weights=err2.sum(axis=1), minlength=self.n_folds)
            if msig is not None:
                ok = mask & np.isfinite(msig) & (msig > 0)
                self.calib[j, 0] += float((err2[ok] / (2.0 * msig[ok] ** 2)).sum())
                self.calib[j, 1] += int(ok.sum())

    def cv(self) -> dict:
        """Cross-validated MSE per candidate name: the folds' squared errors over their counts,
        over the folds :class:`FitAccumulator` tests (neither side empty); NaN when none is."""
        tot = self.count.sum()
        used = (self.count > 0) & (self.count < tot)
        n = self.count[used].sum()
        return {c.name: float(self.sse[used, j].sum() / n) if n > 0 else float("nan")
                for j, c in enumerate(self.candidates)}

    def in_sample(self) -> dict:
        """MSE per candidate name on all images added (NaN when none)."""
        n = self.count.sum()
        return {c.name: float(self.sse[:, j].sum() / n) if n > 0 else float("nan")
                for j, c in enumerate(self.candidates)}

    def sigma_scale(self, name: str) -> tuple[float, int]:
        """``(s, points)``: the maximum-likelihood factor of the merged σ of candidate ``name`` for
        an isotropic 2-D Gaussian error, ``s² = mean(|err|² / (2 σ²))`` over the labelled points
        with finite positive σ (NaN when there are none), and how many points that is."""
        j = [c.name for c in self.candidates].index(name)
        total, n = self.calib[j]
        return (float(np.sqrt(total / n)) if n > 0 else float("nan")), int(n)


#: order of preference among equal cross-validated MSEs: the simplest first (no TTA wins ties)
CHOICE_ORDER = ("none", "plain", "per_view", "per_landmark", "sigma", "robust", "sigma+robust")


def choose_merge(cv: dict, rel_tol: float = 1e-9) -> str:
    """The candidate with the lowest cross-validated MSE in ``cv`` (name -> MSE); a later one in
    :data:`CHOICE_ORDER` must be lower by more than ``rel_tol`` (relative) to win, so ``none`` (no
    TTA) is kept unless something is strictly better. NaN entries never win."""
    names = [n for n in CHOICE_ORDER if n in cv] + [n for n in cv if n not in CHOICE_ORDER]
    best = None
    for n in names:
        v = cv[n]
        if not np.isfinite(v):
            continue
        if best is None or v < cv[best] * (1.0 - rel_tol):
            best = n
    return best if best is not None else names[0]


_CHOICE_LABEL = {
    "none": "no TTA (identity view)",
    "plain": "plain average",
    "per_view": "fitted per member",
    "per_landmark": "fitted per member x landmark",
    "sigma": "sigma (inverse variance)",
    "robust": "robust (reweighted)",
    "sigma+robust": "sigma+robust",
}


def _pct(a, b) -> str:
    return f"{100.0 * (a - b) / b:+.1f}%" if b else "n/a"


def fit_report_lines(report) -> list:
    """The printed report of :func:`augkit.tta.fit_tta` (a ``FitReport``): each member's MSE alone,
    its gain and weight, then the cross-validated MSE of no TTA, the plain average and the fits."""
    res, names = report.result, report.member_names
    table = getattr(report, "cv", None) or {}
    lines = [(f"{report.data}: {report.n_images} validation images, {len(names)} members "
              f"({report.n_models} model(s) x {report.n_views} views); MSE in original pixels"),
             f"{'member':<34}{'alone':>10}{'gain':>10}{'weight':>9}"]
    for i, n in enumerate(names):
        lines.append(f"{n[:33]:<34}{res.solo[i]:>10.3f}{res.drop_one[i]:>+10.3f}{res.per_view[i]:>9.3f}")
    lines.append("(alone: the member's own MSE; gain: how much the plain average's MSE rises without it)")
    cv = res.cv
    lines.append(f"{report.folds}-fold cross-validated MSE:")
    if "none" in table:
        lines.append(f"  no TTA (identity view)       {table['none']:10.3f}   (nothing fitted)")
    elif report.identity_view is not None:
        lines.append(f"  no TTA (identity view)       {res.solo[report.identity_view]:10.3f}   (nothing fitted)")
    lines.append(f"  plain average                {cv['plain']:10.3f}")
    lines.append(f"  fitted per member            {cv['per_view']:10.3f}   ({_pct(cv['per_view'], cv['plain'])} "
                 "vs plain)")
    if report.level != "view":
        lines.append(f"  fitted per member x landmark {cv['per_landmark']:10.3f}   "
                     f"({_pct(cv['per_landmark'], cv['plain'])} vs plain; shrinkage lambda={res.lam:g})")
    for key in ("robust", "sigma", "sigma+robust"):
        if key in table:
            lines.append(f"  {_CHOICE_LABEL[key]:<28} {table[key]:10.3f}   ({_pct(table[key], cv['plain'])} vs plain)")
    choice = getattr(report, "choice", None) or report.used
    if table:
        base = f"; no TTA {table['none']:.3f}" if "none" in table else "; no identity view to compare with"
        lines.append(f"chosen: {_CHOICE_LABEL.get(choice, choice)} (cross-validated MSE "
                     f"{table.get(choice, float('nan')):.3f}{base})")
    scale = getattr(report, "sigma_scale", None)
    if scale is not None:
        lines.append(f"σ calibration: sigma_scale {scale:.4g} (the models' σ x {getattr(report, 'sigma_factor', 1.0):.4g}, "
                     f"maximum likelihood on {getattr(report, 'sigma_points', 0)} validation points)")
    if report.out:
        if choice in ("per_view", "per_landmark"):
            w = res.per_view if choice == "per_view" else res.per_landmark
            lines.append(f"wrote {report.out} ({choice.replace('_', '-')} weights, {w.shape[0]} members"
                         f"{'' if w.ndim == 1 else ' x ' + str(w.shape[1]) + ' landmarks'})")
        elif choice == "none":
            lines.append(f"wrote {report.out} (the identity view only: no TTA setting beat it)")
        else:
            lines.append(f"wrote {report.out} (merge {choice}, {len(names)} members, equal base weights)")
    return lines
