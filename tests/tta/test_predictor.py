"""The batched TTA predictor: exact inverses, batching, call counts, flips, unreadable images."""

import math

import numpy as np
import pytest
from helpers import BlobModel, FixedModel, blob_image, random_face

import augkit as ak
from augkit.presets import preprocess_steps
from augkit.schemes import Scheme
from augkit.tta import TTAPredictor, TTASpec, View, preset_views

SCHEME5 = Scheme("five", 5, ((0, 1), (2, 3)))


def _images(n, seed=0, sizes=((120, 140), (100, 90), (150, 150), (97, 133))):
    rng = np.random.default_rng(seed)
    return [(rng.random(sizes[i % len(sizes)] + (3,)) * 255).astype(np.uint8) for i in range(n)]


def _full_matrix(record):
    m = np.eye(3)
    m[:2] = record["M"]
    return m


def _independent_inverse(pre, view, image, points, scheme):
    """Invert one view's prediction without the predictor: numpy matrix inverse of the product of
    the preprocessing and view matrices, then the flip permutation."""
    r0 = pre(image)
    rv = view.pipeline(r0.image)
    m = _full_matrix(rv.record) @ _full_matrix(r0.record)
    p = np.asarray(points, dtype=np.float64)
    if rv.record["flips"] % 2:
        p = p[scheme.perm]
    h = np.concatenate([p, np.ones((len(p), 1))], axis=1) @ np.linalg.inv(m).T
    return h[:, :2]


@pytest.mark.parametrize("per_landmark", [False, True])
def test_fixed_points_give_exact_weighted_mean_of_inverses(per_landmark):
    rng = np.random.default_rng(3)
    fixed = rng.uniform(5, 60, (5, 2))
    pre = ak.Compose(preprocess_steps(64, "letterbox"))
    views = preset_views("full")
    if per_landmark:
        w = rng.uniform(0.1, 2.0, (len(views), 5))
        spec = TTASpec(views, weights=w)
        wn = w / w.sum(axis=0)
    else:
        w = rng.uniform(0.1, 2.0, len(views))
        spec = TTASpec([View(v.name, v.pipeline, float(x)) for v, x in zip(views, w)])
        wn = np.repeat((w / w.sum())[:, None], 5, axis=1)
    images = _images(5)
    model = FixedModel(fixed, preprocess=pre, scheme=SCHEME5)
    res = TTAPredictor(model, spec, max_batch=32).predict(images)
    for i, img in enumerate(images):
        inv = np.stack([_independent_inverse(pre, v, img, fixed, SCHEME5) for v in views])
        expect = np.einsum("vkc,vk->kc", inv, wn)
        np.testing.assert_allclose(res.members[i], inv, rtol=0, atol=1e-9)
        np.testing.assert_allclose(res.points[i], expect, rtol=0, atol=1e-9)
    # the flip views really swapped: point 0 of a flip view's inverse comes from the model's point 1
    assert not np.allclose(res.members[0, 1], res.members[0, 0])


def test_model_output_is_never_modified():
    fixed = np.arange(10, dtype=np.float64).reshape(5, 2) + 20
    model = FixedModel(fixed, preprocess=ak.Compose(preprocess_steps(48)), scheme=SCHEME5)
    TTAPredictor(model, "full", max_batch=24).predict(_images(3))
    np.testing.assert_array_equal(model._out, model.snapshot)


def test_batched_equals_one_view_at_a_time():
    rng = np.random.default_rng(5)
    pts = [random_face(rng) for _ in range(5)]
    images = [blob_image(p) for p in pts]
    pre = ak.Compose(preprocess_steps(96))
    views = preset_views("flip-rot") + [View.from_steps("bright", [ak.BrightnessContrast(brightness=0.1)])]
    a = TTAPredictor(BlobModel(pre), views, max_batch=9).predict(images)
    b = TTAPredictor(BlobModel(pre), views, max_batch=64, stacked=False).predict(images)
    singles = np.stack([TTAPredictor(BlobModel(pre), [v], max_batch=1).predict(images).points for v in views], axis=1)
    assert np.abs(a.members - b.members).max() < 1e-4
    assert np.abs(a.members - singles).max() < 1e-4
    assert np.abs(a.points - b.points).max() < 1e-4


@pytest.mark.parametrize("n, max_batch", [(7, 10), (4, 6), (3, 100), (5, 1)])
def test_model_called_once_per_chunk(n, max_batch):
    views = preset_views("flip-rot")  # 6 views
    model = FixedModel(np.full((5, 2), 10.0), preprocess=ak.Compose(preprocess_steps(32)), scheme=SCHEME5)
    TTAPredictor(model, views, max_batch=max_batch).predict(_images(n))
    total = n * len(views)
    assert model.calls == math.ceil(total / max_batch)
    assert sum(model.sizes) == total and max(model.sizes) <= max_batch
    # ttach style: one forward per view (and per chunk of images)
    per_view = FixedModel(np.full((5, 2), 10.0), preprocess=ak.Compose(preprocess_steps(32)), scheme=SCHEME5)
    TTAPredictor(per_view, views, max_batch=max_batch, stacked=False).predict(_images(n))
    assert per_view.calls == len(views) * math.ceil(n / max_batch)


def test_flip_views_swap_left_and_right_back():
    rng = np.random.default_rng(7)
    truth = np.stack([random_face(rng) for _ in range(6)])
    images = [blob_image(p) for p in truth]
    pre = ak.Compose(preprocess_steps(96, "letterbox"))
    plain = TTAPredictor(BlobModel(pre), "none").predict(images)
    flip = TTAPredictor(BlobModel(pre), "flip").predict(images)
    wrong = TTAPredictor(BlobModel(pre, scheme=Scheme("noswap", 4, ())), "flip").predict(images)
    err = lambda r: np.linalg.norm(r.points - truth, axis=-1).mean()  # noqa: E731
    assert err(plain) < 0.3 and err(flip) < 0.3
    # the flip view alone, inverted, lands on the truth point by point
    assert np.linalg.norm(flip.members[:, 1] - truth, axis=-1).max() < 0.6
    # without the swap the eyes average into the middle: far worse
    assert err(wrong) > 10 * err(flip) and err(wrong) > 5


def test_flip_needs_a_scheme():
    model = FixedModel(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="scheme"):
        TTAPredictor(model, "flip")
    TTAPredictor(model, "none")  # no flip: no scheme needed


@pytest.mark.parametrize("mode", ["crop", "letterbox"])
def test_every_view_inverts_exactly_through_preprocessing(mode):
    """A content model (finds the blobs) through the 24 views of `full` and the preprocessing:
    every member lands back on the truth in original pixels."""
    rng = np.random.default_rng(11)
    truth = np.stack([random_face(rng, (150, 130)) for _ in range(3)])
    images = [blob_image(p, (150, 130)) for p in truth]
    pre = ak.Compose(preprocess_steps(112, mode))
    res = TTAPredictor(BlobModel(pre), "full", max_batch=40).predict(images)
    assert res.members.shape == (3, 24, 4, 2)
    assert np.linalg.norm(res.members - truth[:, None], axis=-1).max() < 0.6
    assert res.spread.max() < 0.6


def test_unreadable_images_are_reported_and_skipped(tmp_path):
    import cv2
    rng = np.random.default_rng(2)
    truth = [random_face(rng) for _ in range(3)]
    paths = []
    for i, p in enumerate(truth):
        path = tmp_path / f"ok{i}.png"
        cv2.imwrite(str(path), cv2.cvtColor(blob_image(p), cv2.COLOR_RGB2BGR))
        paths.append(str(path))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    paths.insert(1, str(bad))
    paths.append(str(tmp_path / "missing.png"))
    pre = ak.Compose(preprocess_steps(96))
    res = TTAPredictor(BlobModel(pre), "flip").predict(paths)
    assert res.ok.tolist() == [True, False, True, True, False]
    assert [n for n, _ in res.errors] == [str(bad), str(tmp_path / "missing.png")]
    assert "broken.jpg" in res.errors[0][1]
    assert np.isnan(res.points[1]).all() and np.isfinite(res.points[[0, 2, 3]]).all()
    np.testing.assert_allclose(res.points[[0, 2, 3]], np.stack(truth), atol=0.5)


def test_ensemble_members_are_models_times_views():
    pre = ak.Compose(preprocess_steps(40))
    a = FixedModel(np.full((5, 2), 10.0), preprocess=pre, scheme=SCHEME5)
    b = FixedModel(np.full((5, 2), 20.0), preprocess=pre, scheme=SCHEME5)
    views = preset_views("flip")
    w = np.array([0.1, 0.2, 0.3, 0.4])
    pred = TTAPredictor([a, b], TTASpec(views, weights=w), max_batch=3)
    res = pred.predict(_images(2))
    assert res.members.shape == (2, 4, 5, 2) and len(pred.member_names) == 4
    np.testing.assert_allclose(res.points, np.einsum("nmkc,m->nkc", res.members, w / w.sum()), atol=1e-12)
    assert a.calls == b.calls == 2  # 2 images x 2 views = 4 per model, max_batch 3
    single_b = TTAPredictor(b, views).predict(_images(2))
    np.testing.assert_allclose(res.members[:, 2:], single_b.members, atol=1e-12)


def test_views_must_keep_the_input_size():
    pre = ak.Compose(preprocess_steps(32))
    model = FixedModel(np.zeros((5, 2)), preprocess=pre)
    views = [View.from_steps("id", []), View.from_steps("small", [ak.Resize(16, 16)])]
    with pytest.raises(ValueError, match="small"):
        TTAPredictor(model, views).predict(_images(2))


def test_random_preprocessing_is_refused():
    pre = ak.Compose([ak.Affine(rotate=(-5, 5))])
    with pytest.raises(ValueError, match="deterministic"):
        TTAPredictor(FixedModel(np.zeros((5, 2)), preprocess=pre), "none")


def test_torch_model_and_tensor_output():
    torch = pytest.importorskip("torch")
    from augkit.tta import TorchCallable

    class Net(torch.nn.Module):
        def forward(self, x):  # (N, 3, H, W) -> (N, 5, 2): fixed points plus a tiny image term
            n = x.shape[0]
            base = torch.arange(10, dtype=torch.float32).view(1, 5, 2) + 8
            return base.expand(n, 5, 2) + 0.0 * x.mean()

    pre = ak.Compose(preprocess_steps(32))
    model = TorchCallable(Net(), preprocess=pre, scheme=SCHEME5)
    res = TTAPredictor(model, "flip").predict(_images(2))
    fixed = FixedModel(np.arange(10, dtype=np.float64).reshape(5, 2) + 8, preprocess=pre, scheme=SCHEME5)
    ref = TTAPredictor(fixed, "flip").predict(_images(2))
    np.testing.assert_allclose(res.points, ref.points, atol=1e-4)
    # a bare callable returning a tensor (not numpy) works too, and is not modified
    out = torch.ones(4, 5, 2)
    TTAPredictor(lambda b: out[: len(b)], "none", preprocess=pre).predict(_images(4))
    assert torch.equal(out, torch.ones(4, 5, 2))


def test_two_flips_need_no_scheme():
    views = [View.from_steps("id", []), View.from_steps("flip2", [ak.HFlip(), ak.Affine(rotate=3), ak.HFlip()])]
    assert not views[1].flips and View.from_steps("f", [ak.HFlip()]).flips
    model = FixedModel(np.full((5, 2), 9.0), preprocess=ak.Compose(preprocess_steps(32)))
    res = TTAPredictor(model, views).predict(_images(2))
    assert np.isfinite(res.points).all()


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = None

if given is not None:
    @settings(max_examples=40, deadline=None)
    @given(rot=st.floats(-30, 30), sc=st.floats(0.7, 1.4), tx=st.floats(-0.2, 0.2), ty=st.floats(-0.2, 0.2),
           shear=st.floats(-10, 10), flip=st.booleans(), size=st.integers(24, 80), mode=st.sampled_from(["crop", "letterbox"]))
    def test_any_fixed_view_inverts_like_the_independent_matrix_inverse(rot, sc, tx, ty, shear, flip, size, mode):
        steps = [ak.Affine(rotate=rot, scale=sc, translate_x=tx, translate_y=ty, shear=shear)] + ([ak.HFlip()] if flip else [])
        view = View.from_steps("v", steps)
        pre = ak.Compose(preprocess_steps(size, mode))
        fixed = np.random.default_rng(size).uniform(0, size, (5, 2))
        img = _images(1, seed=size)[0]
        res = TTAPredictor(FixedModel(fixed, preprocess=pre, scheme=SCHEME5), [view]).predict([img])
        np.testing.assert_allclose(res.points[0], _independent_inverse(pre, view, img, fixed, SCHEME5), atol=1e-8)
