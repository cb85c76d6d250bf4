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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["fit_weights", "FitResult", "simplex_qp", "LAMBDAS"]

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


def _grams(r: np.ndarray, mask: np.ndarray):
    """Per-landmark Gram matrices and weights (counts). r: (N, M, K, 2) with NaN-free rows where mask."""
    r = np.where(mask[:, None, :, None], r, 0.0)
    g = np.einsum("nmkc,nukc->kmu", r, r)
    cnt = 2.0 * mask.sum(axis=0)                      # (K,) squared terms per member
    return g, cnt


def _mse(w, g, cnt) -> float:
    """MSE of weights w ((M,) or (M, K)) from summed Grams g (K, M, M) and counts (K,)."""
    w = np.broadcast_to(w[:, None], (g.shape[1], g.shape[0])) if w.ndim == 1 else w
    return float(np.einsum("mk,kmu,uk->", w, g, w) / max(cnt.sum(), 1))


def _fit(g, cnt, lams):
    total = g.sum(axis=0) / max(cnt.sum(), 1)
    w0 = simplex_qp(total)
    out = {}
    for lam in lams:
        wk = np.empty((g.shape[1], g.shape[0]))
        for k in range(g.shape[0]):
            gk = g[k] / max(cnt[k], 1)
            wk[:, k] = simplex_qp(gk, w0, lam) if cnt[k] > 0 else w0
        out[lam] = wk
    return w0, out


def fit_weights(members, truth, per_landmark: bool = True, lambdas=LAMBDAS, folds: int = 5,
                seed: int = 0) -> FitResult:
    """Fit merge weights on validation predictions.

    Args:
        members: (N, M, K, 2) member predictions in original pixels (rows with NaN are left out).
        truth: (N, K, 2) true points (NaN points are left out).
        per_landmark: also fit per-landmark weights (with shrinkage chosen by cross-validation).
        lambdas: shrinkage values tried.
        folds: cross-validation folds over images (fewer when there are few images).
    """
    p = np.asarray(members, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if p.ndim != 4 or t.shape != (p.shape[0],) + p.shape[2:]:
        raise ValueError(f"members must be (N, M, K, 2) and truth (N, K, 2); got {p.shape} and {t.shape}")
    keep = np.isfinite(p).all(axis=(1, 2, 3))
    p, t = p[keep], t[keep]
    n, m, k, _ = p.shape
    if n < 2:
        raise ValueError(f"weight fitting needs at least 2 images with predictions, got {n}")
    mask = np.isfinite(t).all(axis=-1)
    r = p - np.where(np.isfinite(t), t, 0.0)[:, None]
    lams = tuple(lambdas) if per_landmark else (float("inf"),)
    g, cnt = _grams(r, mask)
    plain = np.full(m, 1.0 / m)
    # cross-validation over images
    nf = int(min(folds, n))
    order = np.random.default_rng(seed).permutation(n)
    fold_of = np.empty(n, dtype=int)
    fold_of[order] = np.arange(n) % nf
    sse = {"plain": 0.0, "per_view": 0.0, **{lam: 0.0 for lam in lams}}
    tot = 0.0
    for f in range(nf):
        te = fold_of == f
        g_tr, c_tr = _grams(r[~te], mask[~te])
        g_te, c_te = _grams(r[te], mask[te])
        w0, wl = _fit(g_tr, c_tr, lams)
        s = c_te.sum()
        tot += s
        sse["plain"] += _mse(plain, g_te, c_te) * s
        sse["per_view"] += _mse(w0, g_te, c_te) * s
        for lam in lams:
            sse[lam] += _mse(wl[lam], g_te, c_te) * s
    cv_lam = {lam: sse[lam] / tot for lam in lams}
    best_lam = min(lams, key=lambda lam: (cv_lam[lam], -lam))
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
    return FitResult(
        per_view=w0, per_landmark=w_land, lam=best_lam,
        cv={"plain": sse["plain"] / tot, "per_view": sse["per_view"] / tot, "per_landmark": cv_lam[best_lam]},
        solo=solo, drop_one=drop,
        in_sample={"plain": full_plain, "per_view": _mse(w0, g, cnt), "per_landmark": _mse(w_land, g, cnt)},
        cv_by_lam=cv_lam)
