"""Merging, spread, and weight fitting on synthetic predictions with known noise levels."""

import numpy as np
import pytest

from augkit.tta import fit_weights, merge, simplex_qp, spread


def _synthetic(sigmas, n=300, k=20, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0, 100, (n, k, 2))
    sig = np.asarray(sigmas, dtype=np.float64)
    if sig.ndim == 1:
        sig = np.repeat(sig[:, None], k, axis=1)
    members = truth[:, None] + sig[None, :, :, None] * rng.standard_normal((n, sig.shape[0], k, 2))
    return members, truth


def test_merge_methods():
    p = np.zeros((1, 5, 1, 2))
    p[0, :, 0, 0] = [0, 1, 2, 3, 100]
    assert merge(p, method="median")[0, 0, 0] == 2
    assert merge(p, method="trimmed", trim=0.2)[0, 0, 0] == pytest.approx(2.0)
    assert merge(p)[0, 0, 0] == pytest.approx(21.2)
    w = np.array([1, 1, 1, 1, 0.0])
    assert merge(p, w)[0, 0, 0] == pytest.approx(1.5)
    before = p.copy()
    merge(p, w)
    np.testing.assert_array_equal(p, before)


def test_per_landmark_weights_and_spread():
    p = np.zeros((2, 2, 3, 2))
    p[:, 1] = 1.0
    w = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 3.0]])
    out = merge(p, w)
    np.testing.assert_allclose(out[0, :, 0], [0.0, 1.0, 0.75])
    # two members at distance sqrt(2) apart: each is sqrt(2)/2 from the mean
    np.testing.assert_allclose(spread(p), np.full((2, 3), np.sqrt(2) / 2))
    assert spread(p[:, :1]).max() == 0


def test_simplex_qp_constraints():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(6, 6))
    g = a @ a.T
    w = simplex_qp(g)
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0)
    # no feasible point does better (random search on the simplex)
    trials = rng.dirichlet(np.ones(6), 20000)
    assert w @ g @ w <= np.einsum("ti,ij,tj->t", trials, g, trials).min() + 1e-9


def test_fit_recovers_known_weights_from_noise_levels():
    sig = np.array([1.0, 2.0, 4.0, 1.5])
    members, truth = _synthetic(sig)
    res = fit_weights(members, truth, per_landmark=False)
    expect = sig ** -2 / (sig ** -2).sum()   # inverse-variance weights are optimal
    np.testing.assert_allclose(res.per_view, expect, atol=0.02)
    assert res.cv["per_view"] < res.cv["plain"]
    assert res.solo.argmin() == 0 and res.solo.argmax() == 2


def test_fit_per_landmark_recovers_landmark_specific_weights():
    k = 10
    sig = np.ones((2, k))
    sig[0, :5] = 3.0    # member 0 is bad on the first half of the landmarks
    sig[1, 5:] = 3.0    # member 1 on the second half
    members, truth = _synthetic(sig, n=400, k=k, seed=2)
    res = fit_weights(members, truth, per_landmark=True)
    np.testing.assert_allclose(res.per_view, [0.5, 0.5], atol=0.05)
    np.testing.assert_allclose(res.per_landmark[0, :5], 0.1, atol=0.04)    # 1/9 / (1/9 + 1)
    np.testing.assert_allclose(res.per_landmark[0, 5:], 0.9, atol=0.04)
    assert res.lam < 0.3 and res.best == "per_landmark"
    assert res.cv["per_landmark"] < 0.7 * res.cv["per_view"]


def test_shrinkage_keeps_per_landmark_weights_near_per_view_without_signal():
    members, truth = _synthetic([1.0, 1.2, 2.0], n=40, k=30, seed=4)   # few images, same noise everywhere
    res = fit_weights(members, truth, per_landmark=True)
    dev = np.abs(res.per_landmark - res.per_view[:, None]).max()
    unshrunk = fit_weights(members, truth, per_landmark=True, lambdas=(0.0,))
    assert dev < np.abs(unshrunk.per_landmark - unshrunk.per_view[:, None]).max()
    assert res.cv_by_lam[res.lam] <= res.cv_by_lam[0.0]


def test_ensemble_models_times_views_are_fitted_alike():
    # 2 models x 2 views = 4 members; model B is much better
    members, truth = _synthetic([3.0, 3.0, 1.0, 1.0], seed=5)
    res = fit_weights(members, truth, per_landmark=False)
    assert res.per_view[2:].sum() > 0.85


def test_fit_ignores_missing_rows():
    members, truth = _synthetic([1.0, 2.0], n=60, k=4)
    members[3] = np.nan
    truth[5, 1] = np.nan
    res = fit_weights(members, truth, per_landmark=False)
    assert np.isfinite(res.per_view).all() and res.per_view[0] > res.per_view[1]
