"""Chunked accumulators for `tta fit` and `evaluate`: equal to the in-memory computation wherever the
chunk boundaries fall, bounded memory, clear errors."""

import numpy as np
import pytest
from helpers import BLOBS4, BlobModel, FixedModel, blob_image, random_face

from augkit import metrics
from augkit.schemes import get_scheme
from augkit.tta import FitAccumulator, fit_weights, simplex_qp
from augkit.tta.evaluate import EvalAccumulator, evaluate_settings, spearman_spread_error
from augkit.tta.fit import LAMBDAS, fold_of


# ------------------------------------------------------------------ independent reference fit
# The in-memory fit as it was before the accumulator (direct einsum Grams of the selected rows),
# with the one deliberate change: folds are assigned over all N rows before NaN rows are dropped.

def _ref_grams(r, mask):
    r = np.where(mask[:, None, :, None], r, 0.0)
    return np.einsum("nmkc,nukc->kmu", r, r), 2.0 * mask.sum(axis=0)


def _ref_mse(w, g, cnt):
    w = np.broadcast_to(w[:, None], (g.shape[1], g.shape[0])) if w.ndim == 1 else w
    return float(np.einsum("mk,kmu,uk->", w, g, w) / max(cnt.sum(), 1))


def _ref_fit(g, cnt, lams):
    w0 = simplex_qp(g.sum(axis=0) / max(cnt.sum(), 1))
    out = {}
    for lam in lams:
        wk = np.empty((g.shape[1], g.shape[0]))
        for k in range(g.shape[0]):
            wk[:, k] = simplex_qp(g[k] / max(cnt[k], 1), w0, lam) if cnt[k] > 0 else w0
        out[lam] = wk
    return w0, out


def _reference_fit(members, truth, per_landmark=True, lambdas=LAMBDAS, folds=5, seed=0):
    p, t = np.asarray(members, np.float64), np.asarray(truth, np.float64)
    n_all = len(p)
    nf = min(folds, n_all)
    order = np.random.default_rng(seed).permutation(n_all)
    fold = np.empty(n_all, dtype=int)
    fold[order] = np.arange(n_all) % nf
    keep = np.isfinite(p).all(axis=(1, 2, 3))
    p, t, fold = p[keep], t[keep], fold[keep]
    m = p.shape[1]
    mask = np.isfinite(t).all(axis=-1)
    r = p - np.where(np.isfinite(t), t, 0.0)[:, None]
    lams = tuple(lambdas) if per_landmark else (float("inf"),)
    g, cnt = _ref_grams(r, mask)
    plain = np.full(m, 1.0 / m)
    sse = {"plain": 0.0, "per_view": 0.0, **{lam: 0.0 for lam in lams}}
    tot = 0.0
    for f in range(nf):
        te = fold == f
        g_tr, c_tr = _ref_grams(r[~te], mask[~te])
        g_te, c_te = _ref_grams(r[te], mask[te])
        w0, wl = _ref_fit(g_tr, c_tr, lams)
        s = c_te.sum()
        tot += s
        sse["plain"] += _ref_mse(plain, g_te, c_te) * s
        sse["per_view"] += _ref_mse(w0, g_te, c_te) * s
        for lam in lams:
            sse[lam] += _ref_mse(wl[lam], g_te, c_te) * s
    cv_lam = {lam: sse[lam] / tot for lam in lams}
    best = min(lams, key=lambda lam: (cv_lam[lam], -lam))
    w0, wl = _ref_fit(g, cnt, (best,))
    solo = np.array([_ref_mse(np.eye(m)[i], g, cnt) for i in range(m)])
    full = _ref_mse(plain, g, cnt)
    drop = np.array([_ref_mse(np.where(np.arange(m) == i, 0.0, 1.0 / (m - 1)), g, cnt) - full
                     for i in range(m)])
    return dict(per_view=w0, per_landmark=wl[best], lam=best,
                cv={"plain": sse["plain"] / tot, "per_view": sse["per_view"] / tot,
                    "per_landmark": cv_lam[best]},
                solo=solo, drop_one=drop, cv_by_lam=cv_lam,
                in_sample={"plain": full, "per_view": _ref_mse(w0, g, cnt), "per_landmark": _ref_mse(wl[best], g, cnt)})


def _assert_fit_equal(res, ref, tol=1e-9):
    for name in ("per_view", "per_landmark", "solo", "drop_one"):
        np.testing.assert_allclose(getattr(res, name), ref[name], rtol=tol, atol=tol, err_msg=name)
    assert res.lam == ref["lam"]
    for name in ("cv", "in_sample", "cv_by_lam"):
        got, want = getattr(res, name), ref[name]
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=tol, abs=tol), (name, key)


def _members(n=57, m=4, k=6, seed=0, holes=True):
    """Members with per-landmark noise levels; with holes: unreadable rows (including a run of 6),
    missing truth points and one image with no label at all."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0, 100, (n, k, 2))
    sig = rng.uniform(0.5, 3.0, (m, k))
    members = truth[:, None] + sig[None, :, :, None] * rng.standard_normal((n, m, k, 2))
    if holes:
        members[[3, 20, 21, 22, 23, 24, 25, 40]] = np.nan
        members[11, 2, 4, 1] = np.nan            # one NaN coordinate drops the whole image
        truth[5, 1] = np.nan
        truth[30, [0, 2]] = np.nan
        truth[44] = np.nan
    return members, truth


def _chunks(n, sizes, seed=0):
    """Consecutive chunks of the given sizes (cycled), then the chunks in a shuffled order."""
    bounds, i, j = [], 0, 0
    while i < n:
        b = sizes[j % len(sizes)]
        bounds.append(np.arange(i, min(i + b, n)))
        i, j = i + b, j + 1
    order = np.random.default_rng(seed).permutation(len(bounds))
    return [bounds[o] for o in order]


# ------------------------------------------------------------------------------ fit tests

@pytest.mark.parametrize("holes", [False, True])
def test_fit_weights_equals_independent_reference(holes):
    members, truth = _members(holes=holes)
    for per_landmark in (True, False):
        res = fit_weights(members, truth, per_landmark=per_landmark)
        _assert_fit_equal(res, _reference_fit(members, truth, per_landmark=per_landmark))
    res = fit_weights(members, truth, folds=3, seed=7, lambdas=(0.0, 0.1, float("inf")))
    _assert_fit_equal(res, _reference_fit(members, truth, folds=3, seed=7, lambdas=(0.0, 0.1, float("inf"))))


@pytest.mark.parametrize("sizes", [[1], [7], [16], [57], [2, 9, 1, 30], [5, 13]])
def test_fit_in_chunks_equals_in_memory(sizes):
    members, truth = _members()
    ref = _reference_fit(members, truth)
    acc = FitAccumulator(members.shape[1], members.shape[2], len(members))
    for idx in _chunks(len(members), sizes, seed=len(sizes)):
        acc.add(members[idx], truth[idx], idx)
    _assert_fit_equal(acc.result(), ref)
    _assert_fit_equal(fit_weights(members, truth), ref)


def test_fit_chunk_of_only_unreadable_rows_changes_nothing():
    members, truth = _members()
    acc = FitAccumulator(4, 6, len(members))
    run = np.arange(20, 26)                       # all unreadable
    acc.add(members[run], truth[run], run)
    assert acc.count.sum() == 0 and acc.n_offered == 6 and acc.n_usable == 0
    rest = np.setdiff1d(np.arange(len(members)), run)
    acc.add(members[rest], truth[rest], rest)
    _assert_fit_equal(acc.result(), _reference_fit(members, truth))


def test_folds_left_empty_by_unreadable_images_are_skipped():
    members, truth = _members(n=30, holes=False)
    fold = fold_of(np.arange(30), 30, 5)
    members[(fold == 0) | (fold == 3)] = np.nan            # two folds end up without an image
    res = fit_weights(members, truth)
    _assert_fit_equal(res, _reference_fit(members, truth))
    assert np.isfinite(list(res.cv.values())).all()


def test_all_labelled_images_in_one_fold_gives_no_cv_but_a_fit():
    members, truth = _members(n=30, holes=False)
    fold = fold_of(np.arange(30), 30, 5)
    members[fold != 2] = np.nan
    res = fit_weights(members, truth)
    assert np.isnan(res.cv["per_view"]) and np.isnan(res.cv["per_landmark"])
    assert res.lam == float("inf") and res.best == "per_view"
    np.testing.assert_allclose(res.per_view.sum(), 1.0)
    np.testing.assert_allclose(res.per_landmark, np.repeat(res.per_view[:, None], 6, axis=1))


def test_folds_come_from_the_global_position():
    f = fold_of(np.arange(23), 23, 5, seed=3)
    assert np.bincount(f).tolist() == [5, 5, 5, 4, 4]
    np.testing.assert_array_equal(fold_of([7, 2, 19], 23, 5, seed=3), f[[7, 2, 19]])
    assert set(fold_of(np.arange(3), 3, 5).tolist()) == {0, 1, 2}     # at most one fold per image


def test_fit_accumulator_memory_does_not_grow_with_images():
    small, big = FitAccumulator(8, 971, 50), FitAccumulator(8, 971, 20_000)
    for acc in (small, big):
        assert acc.gram.shape == (5, 971, 8, 8) and acc.gram.dtype == np.float64
        assert acc.count.shape == (5, 971)
    per_image = {name: a.nbytes for name, a in vars(big).items() if isinstance(a, np.ndarray)}
    fixed = {name: a.nbytes for name, a in vars(small).items() if isinstance(a, np.ndarray)}
    grown = {name: per_image[name] - fixed[name] for name in per_image if per_image[name] != fixed[name]}
    assert sum(grown.values()) <= 2 * (20_000 - 50)          # fold and seen flag: 1 byte each per image


def test_fit_971_points_8_members_in_chunks():
    rng = np.random.default_rng(9)
    n, m, k = 30, 8, 971
    truth = rng.uniform(0, 500, (n, k, 2)).astype(np.float32)
    members = truth[:, None] + rng.uniform(0.5, 4, (m, 1, 1)) * rng.standard_normal((n, m, k, 2))
    members[[4, 17]] = np.nan
    acc = FitAccumulator(m, k, n, lambdas=(0.3,), folds=3)
    for idx in _chunks(n, [8, 3]):
        acc.add(members[idx].astype(np.float32), truth[idx], idx)
    assert acc.gram.nbytes == 3 * k * m * m * 8
    res = acc.result()
    assert res.per_view.shape == (m,) and res.per_landmark.shape == (m, k)
    np.testing.assert_allclose(res.per_landmark.sum(axis=0), 1.0, atol=1e-9)
    ref = fit_weights(members.astype(np.float32), truth, lambdas=(0.3,), folds=3)
    np.testing.assert_allclose(res.per_landmark, ref.per_landmark, atol=1e-9)
    assert res.cv == pytest.approx(ref.cv, rel=1e-9)


def test_fit_errors_are_clear():
    members, truth = _members(n=6, holes=False)
    members[:] = np.nan
    with pytest.raises(ValueError, match=r"^weight fitting needs at least 2 images with predictions and labels, "
                                         r"got 0: all 6 images were unreadable or unlabelled$"):
        fit_weights(members, truth)
    members, truth = _members(n=6, holes=False)
    truth[1:] = np.nan
    with pytest.raises(ValueError, match=r"got 1 \(5 of 6 images were unreadable or unlabelled\)"):
        fit_weights(members, truth)
    acc = FitAccumulator(4, 6, 10)
    with pytest.raises(ValueError, match="no image was given"):
        acc.result()
    with pytest.raises(ValueError, match="expected 4 members per image, got 3"):
        acc.add(members[:2, :3], truth[:2], [0, 1])
    with pytest.raises(ValueError, match="the members predict 6 points but the labels have 5"):
        acc.add(members[:2], truth[:2, :5], [0, 1])
    with pytest.raises(ValueError, match="the members predict 5 points but 6 were expected"):
        acc.add(members[:2, :, :5], truth[:2, :5], [0, 1])
    with pytest.raises(ValueError, match="2 rows of members, 2 of truth and 3 indices"):
        acc.add(members[:2], truth[:2], [0, 1, 2])
    with pytest.raises(ValueError, match="image position 10 is outside the 10 images"):
        acc.add(members[:2], truth[:2], [3, 10])
    acc.add(members[:2], truth[:2], [0, 1])
    with pytest.raises(ValueError, match="image position 1 was added twice"):
        acc.add(members[:2], truth[:2], [1, 2])
    with pytest.raises(ValueError, match="image position 4 was added twice"):
        acc.add(members[:2], truth[:2], [4, 4])
    with pytest.raises(ValueError, match="at least 2 folds"):
        FitAccumulator(4, 6, 10, folds=1)


# ------------------------------------------------------------------------------ evaluation

def _eval_data(n=40, k=68, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0, 200, (n, k, 2))
    spread = rng.uniform(0.5, 5, (n, k))
    pred = truth + spread[..., None] * rng.standard_normal((n, k, 2))
    pred[[2, 9, 10, 11, 12]] = np.nan                 # unreadable, a run of 4 among them
    truth[5, 3] = np.nan
    truth[7, [0, 10]] = np.nan
    return pred, spread, truth


def _old_eval(pred, spread, truth, scheme):
    ok = ~np.isnan(pred).all(axis=(1, 2))
    m = metrics.summary(pred[ok], truth[ok], scheme)
    m["rho_point"], m["rho_image"] = spearman_spread_error(spread[ok], pred[ok], truth[ok], scheme)
    return m


@pytest.mark.parametrize("scheme", [None, "ibug68"])
@pytest.mark.parametrize("sizes", [[1], [4], [40], [3, 11, 1, 2]])
def test_eval_in_chunks_equals_in_memory(scheme, sizes):
    sch = get_scheme(scheme) if scheme else None
    pred, spread, truth = _eval_data()
    want = _old_eval(pred, spread, truth, sch)
    acc = EvalAccumulator(68, sch, n_worst=5)
    for idx in sorted(_chunks(len(pred), sizes), key=lambda c: c[0]):      # rho pools in image order
        acc.add(pred[idx], spread[idx], truth[idx], idx)
    got = acc.result()
    for key in ("mse", "nme", "fr"):
        assert got[key] == pytest.approx(want[key], rel=1e-12), key
    assert got["rho_point"] == want["rho_point"] and got["rho_image"] == want["rho_image"]
    assert got["n_images"] == 35 and got["n_unreadable"] == 5
    ok = np.flatnonzero(~np.isnan(pred).all(axis=(1, 2)))
    e = metrics.per_image_nme(pred[ok], truth[ok], sch)
    assert [i for i, _ in got["worst"]] == ok[np.argsort(-e)[:5]].tolist()
    np.testing.assert_allclose([v for _, v in got["worst"]], np.sort(e)[::-1][:5], rtol=1e-12)


def test_eval_sample_is_bounded_and_close():
    rng = np.random.default_rng(1)
    n, k = 300, 20
    truth = rng.uniform(0, 100, (n, k, 2))
    spread = rng.uniform(0.1, 5, (n, k))
    pred = truth + spread[..., None] * rng.standard_normal((n, k, 2))
    want = _old_eval(pred, spread, truth, None)
    acc = EvalAccumulator(k, spearman_sample=500, seed=3)
    for idx in _chunks(n, [7, 30], seed=2):
        acc.add(pred[idx], spread[idx], truth[idx], idx)
    got = acc.result()
    assert acc._points.rows.shape == (500, 2) and acc._images.rows.shape[0] <= 500 and acc._images.n_seen == 300
    assert acc._points.n_seen == n * k
    assert got["rho_point"] == pytest.approx(want["rho_point"], abs=0.1) and want["rho_point"] > 0.3
    assert got["rho_image"] == pytest.approx(want["rho_image"], rel=1e-12)      # 300 images fit
    assert got["mse"] == pytest.approx(want["mse"], rel=1e-12)


def test_eval_errors_are_clear():
    pred, spread, truth = (a[:4] for a in _eval_data())
    acc = EvalAccumulator(68)
    with pytest.raises(ValueError, match="^the model predicts 5 points but the labels have 68$"):
        acc.add(pred[:, :5], spread[:, :5], truth, np.arange(4))
    with pytest.raises(ValueError, match="^no image could be evaluated: none was given$"):
        acc.result()
    acc.add(np.full((3, 68, 2), np.nan), spread[:3], truth[:3], np.arange(3))
    with pytest.raises(ValueError, match="^no image could be evaluated: all 3 were unreadable$"):
        acc.result()
    with pytest.raises(ValueError, match="4 prediction rows, 3 label rows"):
        acc.add(pred, spread, truth[:3], np.arange(4))


def test_evaluate_settings_matches_the_in_memory_metrics(tmp_path):
    rng = np.random.default_rng(0)
    pts = [random_face(rng) for _ in range(7)]
    images = [blob_image(p, noise=8, seed=i) for i, p in enumerate(pts)]
    images.insert(3, str(tmp_path / "missing.png"))
    truth = np.stack(pts[:3] + [np.zeros((4, 2))] + pts[3:]) + rng.normal(0, 0.5, (8, 4, 2))
    results, members = evaluate_settings([BlobModel()], [("none", "none"), ("flip", "flip")], images, truth,
                                         scheme=BLOBS4)
    ok = members.ok
    assert ok.tolist() == [True] * 3 + [False] + [True] * 4
    for r in results:
        want = metrics.summary(r.points[ok], truth[ok], BLOBS4)
        rho = spearman_spread_error(r.spread[ok], r.points[ok], truth[ok], BLOBS4)
        for key in ("mse", "nme", "fr"):
            assert r.metrics[key] == pytest.approx(want[key], rel=1e-12)
        np.testing.assert_array_equal([r.metrics["rho_point"], r.metrics["rho_image"]], rho)
        assert r.metrics["n_images"] == 7 and len(r.metrics["worst"]) == 7
    with pytest.raises(ValueError, match="the model predicts 5 points but the labels have 68"):
        evaluate_settings([FixedModel(np.zeros((5, 2)) + 50)], [("none", "none")], images[:2],
                          np.zeros((2, 68, 2)))
