"""TTA with models that report a per-landmark σ: σ follows each view's exact inverse, the σ and
robust merges, the spec's sigma_scale, the fit's choice among merges and its σ calibration, and the
σ columns of the prediction files."""

import json

import numpy as np
import pytest
from helpers import BlobModel, FixedModel, blob_set

import augkit as ak
from augkit.presets import preprocess_steps
from augkit.schemes import Scheme
from augkit.tta import TTAPredictor, TTASpec, fit_tta, get_spec, load_spec, merge, preset_views, save_spec
from augkit.tta.fit import Candidate, MergeAccumulator, choose_merge
from augkit.tta.merge import merge_with_sigma, robust_weights
from augkit.tta.outputs import points_csv_text, points_json_text
from augkit.tta.predictor import invert_sigma
from augkit.tta.views import SpecError

SCHEME5 = Scheme("five", 5, ((0, 1), (2, 3)))


class SigmaFixed(FixedModel):
    """FixedModel that also reports a fixed σ per landmark (input-frame pixels)."""

    has_sigma = True

    def __init__(self, points, sigma, **kw):
        super().__init__(points, **kw)
        self.sigma = np.asarray(sigma, dtype=np.float64)

    def call_with_sigma(self, batch):
        return self(batch), np.repeat(self.sigma[None], len(batch), axis=0)


class SigmaBlobs(BlobModel):
    """The blob finder, reporting σ = 1.5 input pixels on every point."""

    has_sigma = True

    def call_with_sigma(self, batch):
        pts = self(batch)
        return pts, np.full(pts.shape[:2], 1.5)


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    sizes = ((120, 140), (100, 90), (150, 150))
    return [(rng.random(sizes[i % 3] + (3,)) * 255).astype(np.uint8) for i in range(n)]


def _det_and_flip(pre, view, image):
    """|det| of the 2x2 linear part of preprocessing + view, and whether the view flips."""
    r0 = pre(image)
    rv = view.pipeline(r0.image)
    m = np.eye(3)
    m0 = np.eye(3)
    m[:2], m0[:2] = rv.record["M"], r0.record["M"]
    a = (m @ m0)[:2, :2]
    return abs(np.linalg.det(a)), rv.record["flips"] % 2 == 1


def test_member_sigma_is_the_model_sigma_through_each_exact_inverse_times_sigma_scale():
    rng = np.random.default_rng(1)
    sigma = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    pre = ak.Compose(preprocess_steps(64, "letterbox"))
    views = preset_views("full")
    spec = TTASpec(views, sigma_scale=1.5)
    images = _images(4)
    model = SigmaFixed(rng.uniform(5, 60, (5, 2)), sigma, preprocess=pre, scheme=SCHEME5)
    mp = TTAPredictor(model, spec, max_batch=16).predict_members(images)
    assert mp.sigma.shape == (4, len(views), 5)
    for i, img in enumerate(images):
        for v, view in enumerate(views):
            det, flipped = _det_and_flip(pre, view, img)
            expect = (sigma[SCHEME5.perm] if flipped else sigma) / np.sqrt(det) * 1.5
            np.testing.assert_allclose(mp.sigma[i, v], expect, rtol=1e-9)
    res = TTAPredictor(model, spec).predict(images)
    np.testing.assert_allclose(res.sigma, mp.sigma.mean(axis=1), rtol=1e-9)   # plain mean: equal weights


def test_invert_sigma_refuses_a_singular_record():
    with pytest.raises(ValueError, match="singular"):
        invert_sigma({"M": [[0, 0, 1], [0, 0, 2]], "flips": 0}, np.ones(3))


def test_a_sigma_merge_with_a_model_without_sigma_is_refused_by_name():
    spec = TTASpec(preset_views("flip"), merge="sigma")
    with pytest.raises(ValueError, match="needs the models' σ"):
        TTAPredictor(FixedModel(np.zeros((5, 2)), scheme=SCHEME5), spec)


def test_sigma_merge_is_the_inverse_variance_mean_and_its_sigma_the_weighted_mean():
    p = np.zeros((1, 2, 1, 2))
    p[0, 1, 0] = [10.0, -4.0]
    s = np.array([[[1.0], [3.0]]])
    merged, msig = merge_with_sigma(p, s, method="sigma")
    w = np.array([1.0, 1 / 9.0]) / (1 + 1 / 9.0)
    np.testing.assert_allclose(merged[0, 0], w[1] * np.array([10.0, -4.0]))
    np.testing.assert_allclose(msig[0, 0], w @ np.array([1.0, 3.0]))
    # equal σ: the plain mean
    np.testing.assert_allclose(merge(p, method="sigma", sigma=np.ones((1, 2, 1))), p.mean(axis=1))


def test_robust_merge_ignores_a_view_that_failed_on_the_whole_face():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 100, (3, 20, 2))
    p = truth[:, None] + rng.normal(0, 0.5, (3, 6, 20, 2))
    p[:, 4] += 40.0                                            # one view off on every point
    err_mean = np.abs(merge(p) - truth).mean()
    err_rob = np.abs(merge(p, method="robust") - truth).mean()
    assert err_mean > 5.0 and err_rob < 0.6
    w = robust_weights(p)
    assert w[:, 4].max() < 0.02
    np.testing.assert_allclose(w.sum(axis=1), 1.0)


def test_one_corrupted_view_per_image_robust_and_sigma_recover_the_clean_answer_the_mean_does_not():
    """Each image has one view (a different one per image) that failed: moved by 30-60 px on
    every point, and its σ says so (the head is unsure where it fails)."""
    rng = np.random.default_rng(7)
    n, m, k = 50, 8, 30
    truth = rng.uniform(0, 200, (n, k, 2))
    p = truth[:, None] + rng.normal(0, 1.0, (n, m, k, 2))
    sigma = np.full((n, m, k), 1.0)
    bad = rng.integers(0, m, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    shift = rng.uniform(30, 60, n)[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    p[np.arange(n), bad] += shift[:, None]
    sigma[np.arange(n), bad] = 25.0
    clean = np.stack([np.delete(p[i], bad[i], axis=0).mean(axis=0) for i in range(n)])   # the good views' mean
    mse = {name: float(((merge(p, method=name, sigma=sigma) - truth) ** 2).mean())
           for name in ("mean", "robust", "sigma", "sigma+robust")}
    ideal = float(((clean - truth) ** 2).mean())                        # about 1/7: the seven good views
    assert mse["mean"] > 100 * ideal
    for name in ("robust", "sigma", "sigma+robust"):
        assert mse[name] < 1.5 * ideal, (name, mse)


def test_with_two_members_only_sigma_tells_which_is_wrong():
    p = np.zeros((1, 2, 3, 2))
    p[0, 1] += 8.0
    np.testing.assert_allclose(merge(p, method="robust"), p.mean(axis=1))
    s = np.array([[[0.5] * 3, [6.0] * 3]])
    out = merge(p, method="sigma+robust", sigma=s)
    assert np.abs(out).max() < 0.1


def test_spec_file_keeps_sigma_scale_and_the_fit_record(tmp_path):
    spec = TTASpec(preset_views("flip"), merge="sigma+robust", sigma_scale=2.5,
                   fit={"merge": "sigma+robust", "cv_mse": {"none": 3.0, "sigma+robust": 2.0}})
    save_spec(spec, tmp_path / "s.yaml")
    back = load_spec(tmp_path / "s.yaml")
    assert back.merge == "sigma+robust" and back.sigma_scale == 2.5 and back.needs_sigma
    assert back.fit["cv_mse"]["none"] == 3.0
    assert get_spec("flip").sigma_scale == 1.0
    with pytest.raises(SpecError, match="sigma_scale"):
        TTASpec(preset_views("flip"), sigma_scale=0.0)


def test_merge_accumulator_calibrates_sigma_and_compares_merges_on_the_same_folds():
    rng = np.random.default_rng(4)
    n, m, k = 400, 4, 6
    truth = rng.uniform(0, 50, (n, k, 2))
    members = truth[:, None] + rng.normal(0, 2.0, (n, m, k, 2))   # per-axis error 2 px
    sigma = np.full((n, m, k), 1.0)                                # the models say 1 px
    cands = [Candidate("none", "mean", (0,)), Candidate("plain", "mean"), Candidate("sigma", "sigma")]
    acc = MergeAccumulator(cands, m, k, n, folds=5)
    for s in range(0, n, 64):                                      # chunk by chunk
        acc.add(members[s:s + 64], truth[s:s + 64], np.arange(s, min(s + 64, n)), sigma[s:s + 64])
    cv = acc.cv()
    assert cv["plain"] < 0.4 * cv["none"]                          # 4 independent members: MSE / 4
    np.testing.assert_allclose(cv["none"], 4.0, rtol=0.1)          # per coordinate: 2² (the competition MSE)
    f_none, pts = acc.sigma_scale("none")
    assert pts == n * k and abs(f_none - 2.0) < 0.1
    f_plain, _ = acc.sigma_scale("plain")                          # merged σ still says 1, the error is 1
    assert abs(f_plain - 1.0) < 0.08


def test_choose_merge_keeps_no_tta_on_a_tie_and_skips_nan():
    assert choose_merge({"none": 2.0, "plain": 2.0, "robust": 2.0}) == "none"
    assert choose_merge({"none": 2.0, "plain": 1.9, "sigma": float("nan")}) == "plain"
    assert choose_merge({"none": float("nan"), "sigma+robust": 1.0}) == "sigma+robust"


def test_fit_tta_compares_sigma_merges_calibrates_and_never_loses_to_no_tta(tmp_path):
    folder, _, _, _ = blob_set(tmp_path, seed=5, n=12)
    model = SigmaBlobs(ak.Compose(preprocess_steps(96, "letterbox")))
    out = tmp_path / "fitted.yaml"
    rep = fit_tta([model], folder, tta="flip-rot", folds=3, out=out, calibrate=True)
    assert {"none", "plain", "per_view", "per_landmark", "robust", "sigma", "sigma+robust"} <= set(rep.cv)
    assert rep.cv[rep.choice] <= rep.cv["none"]
    spec = load_spec(out)
    assert spec.fit["merge"] == rep.choice and spec.sigma_scale == pytest.approx(rep.sigma_scale, rel=1e-5)   # 6 digits in the file
    assert rep.sigma_points == 12 * 4 and np.isfinite(rep.sigma_scale) and rep.sigma_scale > 0
    with pytest.raises(Exception, match="--calibrate needs models that report σ"):
        fit_tta([BlobModel(ak.Compose(preprocess_steps(96, "letterbox")))], folder, tta="flip", folds=3,
                calibrate=True)


def test_csv_and_json_carry_sigma_after_the_spread():
    pts = np.arange(2 * 3 * 2, dtype=float).reshape(2, 3, 2)
    spr, sig = np.full((2, 3), 0.25), np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    text = points_csv_text(["a.jpg", "b.jpg"], pts, spr, sigma=sig).splitlines()
    head = text[0].split(",")
    assert head[7:10] == ["Point_0_S", "Point_1_S", "Point_2_S"]
    assert head[10:] == ["Point_0_SIGMA", "Point_1_SIGMA", "Point_2_SIGMA"]
    assert text[2].split(",")[10:] == ["4.000", "5.000", "6.000"]
    doc = json.loads(points_json_text(["a.jpg", "b.jpg"], pts, spr, sigma=sig))
    assert doc["images"][1]["sigma"] == [4.0, 5.0, 6.0] and doc["images"][0]["uncertainty"] == [0.25] * 3
