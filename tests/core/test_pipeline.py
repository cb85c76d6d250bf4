"""Pipelines: random vs fixed mode, record/replay, serialisation, dtypes, errors, every step checked."""

import json
import subprocess
import sys

import numpy as np
import pytest

import augkit as ak
from augkit.transforms import REGISTRY

# one instance of every step class, random where it can be: the shared checkers below run on all
EXAMPLES = {
    "Affine": ak.Affine(rotate=(-20, 20), scale=(0.9, 1.1), translate=(-0.05, 0.05), shear=(-5, 5)),
    "HFlip": ak.HFlip(),
    "RandomCrop": ak.RandomCrop(100, 120),
    "CenterCrop": ak.CenterCrop(100, 120),
    "CropBox": ak.CropBox(margin=0.2, shift=(-0.05, 0.05)),
    "Resize": ak.Resize(64, 80),
    "ScaleMinSide": ak.ScaleMinSide(90),
    "Pad": ak.Pad(220, 240),
    "LetterBox": ak.LetterBox(96, 96),
    "Perspective": ak.Perspective(yaw=(-0.2, 0.2), pitch=(-0.1, 0.1), jitter=0.05),
    "BrightnessContrast": ak.BrightnessContrast(brightness=(-0.2, 0.2), contrast=(0.8, 1.2)),
    "Gamma": ak.Gamma(gamma=(0.7, 1.5)),
    "Blur": ak.Blur(sigma=(0.5, 1.5)),
    "MotionBlur": ak.MotionBlur(),
    "Grayscale": ak.Grayscale(),
    "Noise": ak.Noise(std=(3, 9)),
    "JpegQuality": ak.JpegQuality(quality=(30, 60)),
    "BlackBars": ak.BlackBars(),
    "Erase": ak.Erase(n=(1, 3)),
    "Downscale": ak.Downscale(scale=(0.25, 0.5)),
    "Sharpen": ak.Sharpen(amount=(0.3, 1.0)),
    "ColorJitter": ak.ColorJitter(),
    "CLAHE": ak.CLAHE(),
    "CoarseDropout": ak.CoarseDropout(fill="random"),
    "RandomPatch": ak.RandomPatch(n=(1, 3)),
    "Caption": ak.Caption(outline=0.1, position="landmarks"),
    "Photometric": None,  # albumentations: built lazily below (imports albumentations)
    "Compose": None, "OneOf": None, "Sometimes": None,  # containers: covered by their own tests
}


def every_step():
    import albumentations as A
    steps = dict(EXAMPLES)
    steps["Photometric"] = ak.Photometric(A.CLAHE(p=1.0))
    return {k: v for k, v in steps.items() if v is not None}


def test_every_registered_step_has_an_example():
    assert set(REGISTRY) <= set(EXAMPLES), f"add examples for {set(REGISTRY) - set(EXAMPLES)}"


@pytest.mark.parametrize("name", sorted(k for k, v in EXAMPLES.items() if v is not None or k == "Photometric"))
@pytest.mark.parametrize("channels", [None, 1, 3, 4])
def test_each_step_dtype_shape_no_inplace_same_seed_and_replay(name, channels, face):
    step = every_step()[name]
    img, pts = face
    img = img[..., 0] if channels is None else (img[..., :1] if channels == 1 else (
        img if channels == 3 else np.dstack([img, np.full(img.shape[:2], 200, np.uint8)])))
    if name == "Photometric" and channels in (1, 4):
        pytest.skip("CLAHE takes gray or RGB only")
    img = np.ascontiguousarray(img)
    img.setflags(write=False)  # a write would raise: nothing is modified in place
    pipe = ak.Compose([step], scheme="ibug68")
    a = pipe(img, pts, rng=np.random.default_rng(7))
    b = pipe(img, pts, rng=np.random.default_rng(7))
    assert a.image.dtype == np.uint8
    assert a.image.ndim == img.ndim and (img.ndim == 2 or a.image.shape[2] == img.shape[2])
    assert tuple(a.record["out"]) == (a.image.shape[1], a.image.shape[0])
    assert a.image.tobytes() == b.image.tobytes()  # same seed, same bytes
    np.testing.assert_array_equal(a.points, b.points)
    rec = json.loads(json.dumps(a.record))  # small and JSON-serialisable
    c = pipe.replay(rec, img, pts)
    assert c.image.tobytes() == a.image.tobytes()  # replay is bit-identical
    np.testing.assert_array_equal(c.points, a.points)
    if not step.geometric:
        np.testing.assert_array_equal(a.points, pts)  # photometric: identity on points
    assert a.image.flags.writeable and not np.shares_memory(a.image, img)


def test_public_surface_example(face):
    image, points = face
    pipe = ak.Compose([
        ak.Affine(rotate=(-20, 20), scale=(0.9, 1.1), translate=(-0.05, 0.05), shear=(-5, 5), p=0.8),
        ak.HFlip(p=0.5),
        ak.Resize(224, 224),
        ak.OneOf([ak.BrightnessContrast(brightness=(-0.2, 0.2), contrast=(0.8, 1.2)),
                  ak.Blur(sigma=(0.5, 1.5))], p=0.5),
    ], scheme="ibug68")
    flips = 0
    for seed in range(20):
        out = pipe(image, points, rng=np.random.default_rng(seed))
        assert out.image.shape == (224, 224, 3) and out.points.shape == (68, 2) and out.visible.dtype == bool
        np.testing.assert_allclose(out.invert(out.points), points, atol=1e-6)
        again = pipe.replay(out.record, image, points)
        assert again.image.tobytes() == out.image.tobytes()
        flips += out.record["flips"]
        # image only
        only = pipe(image, rng=np.random.default_rng(seed))
        assert only.points is None and only.visible is None
        assert only.image.tobytes() == out.image.tobytes()
    assert 3 < flips < 17
    same = ak.Compose.from_dict(pipe.to_dict())
    assert same.to_dict() == pipe.to_dict()
    x = same(image, points, rng=np.random.default_rng(3))
    y = pipe(image, points, rng=np.random.default_rng(3))
    assert x.image.tobytes() == y.image.tobytes()


def test_yaml_and_json_round_trip(tmp_path, face):
    import albumentations as A
    image, points = face
    pipe = ak.Compose([
        ak.Sometimes(ak.Affine(rotate=(-5, 5)), p=0.7),
        ak.OneOf([ak.HFlip(), ak.Affine(scale=1.1)], weights=[1, 3]),
        ak.Compose([ak.CenterCrop(150, 150), ak.Resize(100, 100)]),
        ak.Photometric(A.CLAHE(clip_limit=2.0, p=1.0)),
        ak.Erase(n=2, fill="noise"),
    ], scheme="ibug68", border_mode="reflect")
    for name in ("p.yaml", "p.json"):
        ak.save(pipe, tmp_path / name)
        back = ak.load(tmp_path / name)
        assert back.to_dict() == pipe.to_dict()
        a = back(image, points, rng=np.random.default_rng(5))
        b = pipe(image, points, rng=np.random.default_rng(5))
        assert a.image.tobytes() == b.image.tobytes()
        np.testing.assert_array_equal(a.points, b.points)


def test_deterministic_pipeline_is_a_tta_view(face):
    image, points = face
    view = ak.Compose([ak.HFlip(), ak.Affine(rotate=5, scale=1.05), ak.Resize(64, 64),
                       ak.BrightnessContrast(brightness=0.1)], scheme="ibug68")
    assert view.deterministic
    a, b = view(image, points), view(image, points, rng=np.random.default_rng(1))
    assert a.image.tobytes() == b.image.tobytes()
    assert not ak.Compose([ak.HFlip(p=0.5)], scheme="ibug68").deterministic
    assert not ak.Compose([ak.Affine(rotate=(-1, 1))]).deterministic
    with pytest.raises(ValueError, match="rng"):
        ak.Compose([ak.Affine(rotate=(-1, 1))])(image)


def test_points_outside_the_frame_are_kept_and_flagged(face):
    image, points = face
    pts = np.array(points, copy=True)
    pts[0] = (5, 5)        # cut by the crop below
    pts[1] = (-30, 400)    # outside the input already
    pts[2] = (100, 90)     # centre: stays
    out = ak.Compose([ak.CenterCrop(100, 100)], scheme="ibug68")(image, pts)
    assert len(out.points) == 68
    assert not out.visible[0] and not out.visible[1] and out.visible[2]
    np.testing.assert_allclose(out.points[0], (5 - 50, 5 - 40))


def test_probabilities_and_weights_are_respected(face):
    image, _ = face
    small = image[:20, :20]
    rng = np.random.default_rng(0)
    pipe = ak.Compose([ak.Sometimes(ak.Grayscale(), p=0.3),
                       ak.OneOf([ak.Blur(sigma=1.0), ak.Gamma(gamma=1.2)], weights=[1, 3])])
    recs = [pipe(small, rng=rng).record["steps"] for _ in range(2000)]
    ran = np.mean([r[0] is not None for r in recs])
    second = np.mean([r[1]["choice"] == 1 for r in recs])
    assert abs(ran - 0.3) < 0.04 and abs(second - 0.75) < 0.04


def test_no_global_random_state_is_used(face):
    image, points = face
    pipe = ak.Compose([ak.Affine(rotate=(-10, 10)), ak.Noise(std=5)], scheme="ibug68")
    np.random.seed(0)
    a = pipe(image, points, rng=np.random.default_rng(1))
    np.random.seed(99)
    b = pipe(image, points, rng=np.random.default_rng(1))
    assert a.image.tobytes() == b.image.tobytes()


@pytest.mark.parametrize("make, match", [
    (lambda: ak.Resize(-5, 10), "height must be a positive whole number"),
    (lambda: ak.CenterCrop(10, 0), "width must be a positive whole number"),
    (lambda: ak.RandomCrop(10.5, 10), "height"),
    (lambda: ak.HFlip(p=1.5), r"p must be a probability in \[0, 1\]"),
    (lambda: ak.Affine(p=-0.1), "p must be a probability"),
    (lambda: ak.Affine(rotate=(10, -10)), "low <= high"),
    (lambda: ak.Affine(scale="big"), "scale must be a number"),
    (lambda: ak.Blur(kind="median"), "kind must be"),
    (lambda: ak.OneOf([ak.HFlip()], weights=[1, 2]), "weights must be 1"),
    (lambda: ak.Compose([ak.HFlip(p=0.0)])(np.zeros((4, 4), np.uint8), np.zeros((68, 2))), "no scheme"),
    (lambda: ak.Compose([ak.Resize(5, 5)], scheme="face999"), "unknown scheme 'face999'"),
    (lambda: ak.Compose([lambda x: x]), "must be an augkit step"),
    (lambda: ak.Compose([ak.Resize(5, 5)], border_mode="mirror"), "border_mode must be one of"),
])
def test_bad_arguments_say_what_was_expected(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_bad_points_and_images_say_what_was_expected(face):
    image, points = face
    pipe = ak.Compose([ak.Resize(32, 32)], scheme="ibug68")
    with pytest.raises(ValueError, match=r"shape \(K, 2\)"):
        pipe(image, points.ravel())
    with pytest.raises(ValueError, match="68 landmarks"):
        pipe(image, points[:5])
    with pytest.raises(TypeError, match="numpy array"):
        pipe(image.tolist())
    with pytest.raises(ValueError, match="HxW"):
        pipe(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(TypeError, match="Generator"):
        ak.Compose([ak.Affine(rotate=(0, 1))])(image, rng=42)
    with pytest.raises(ValueError, match="box"):
        ak.Compose([ak.CropBox()])(image)


def test_flip_without_scheme_is_allowed_for_unordered_points_and_images(face):
    image, points = face
    assert ak.Compose([ak.HFlip()])(image).image.tobytes() == image[:, ::-1].tobytes()  # image only: fine
    inner = ak.Compose([ak.OneOf([ak.Compose([ak.HFlip()]), ak.Resize(10, 10)])], scheme="ibug68")
    inner(image, points, rng=np.random.default_rng(0))  # a nested Compose takes the outer scheme
    out = ak.Compose([ak.HFlip()], points_unordered=True)(image, points)
    np.testing.assert_allclose(out.points[:, 0], image.shape[1] - 1 - points[:, 0])
    np.testing.assert_allclose(out.invert(out.points), points)


def test_albumentations_interop():
    import albumentations as A
    with pytest.raises(TypeError, match="ak.HFlip"):
        ak.Photometric(A.HorizontalFlip())
    with pytest.raises(TypeError, match="ak.Affine"):
        ak.Photometric(A.Rotate())
    with pytest.raises(TypeError, match="ak.Photometric"):
        ak.Compose([A.CLAHE()])


def test_import_augkit_stays_light():
    code = ("import sys, augkit, augkit.cli, augkit.presets, augkit.metrics, augkit.io; "
            "print(','.join(m for m in ('torch', 'torchvision', 'albumentations', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_plan_gives_the_geometry_of_a_call_without_pixels(face):
    image, points = face
    pipe = ak.Compose([ak.Affine(rotate=(-10, 10)), ak.HFlip(p=0.5), ak.Resize(50, 60)], scheme="ibug68")
    for seed in range(5):
        m, size, flips = pipe.plan((200, 180), rng=np.random.default_rng(seed))
        out = pipe(image, points, rng=np.random.default_rng(seed))
        np.testing.assert_array_equal(m, out.matrix)
        assert list(size) == out.record["out"] and flips == out.record["flips"]
    assert pipe.can_flip and not ak.Compose([ak.Resize(5, 5)]).can_flip


DTYPE_RANGE = {np.uint8: 255.0, np.uint16: 65535.0, np.float32: 1.0}


def as_dtype(img8, dtype):
    """The same picture on another dtype's full range."""
    if dtype is np.uint8:
        return img8
    return (img8.astype(np.uint16) * 257) if dtype is np.uint16 else (img8 / np.float32(255)).astype(np.float32)


@pytest.mark.parametrize("name", sorted(k for k, v in EXAMPLES.items() if v is not None or k == "Photometric"))
@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_every_step_on_uint16_and_float32_matches_uint8_or_refuses_clearly(name, dtype, channels, face):
    """Same dtype out, values in range, and the same relative effect as on uint8 (same draws)."""
    step = every_step()[name]
    img8, pts = face
    img8 = np.ascontiguousarray(img8[..., :1] if channels == 1 else (
        img8 if channels == 3 else np.dstack([img8, np.full(img8.shape[:2], 200, np.uint8)])))
    if name == "Photometric" and channels in (1, 4):
        pytest.skip("CLAHE takes gray or RGB only")
    pipe = ak.Compose([step], scheme="ibug68")
    ref = pipe(img8, pts, rng=np.random.default_rng(3))
    img = as_dtype(img8, dtype)
    try:
        out = pipe(img, pts, rng=np.random.default_rng(3))
    except TypeError as e:  # a refusal must say what was given and how to convert
        assert np.dtype(dtype).name in str(e) and "convert" in str(e), str(e)
        return
    top = DTYPE_RANGE[dtype]
    assert out.image.dtype == dtype and out.image.shape == ref.image.shape
    assert out.image.min() >= 0 and out.image.max() <= top
    rel = np.abs(out.image.astype(np.float64) / top - ref.image.astype(np.float64) / 255.0)
    assert rel.mean() < 0.005 and np.percentile(rel, 99) < 0.03, (rel.mean(), rel.max())
    np.testing.assert_allclose(out.points, ref.points)


def test_noise_std_is_in_uint8_levels_whatever_the_dtype():
    flat = np.full((200, 200), 0.5, np.float32)
    out = ak.Compose([ak.Noise(std=5)])(flat, rng=np.random.default_rng(0)).image
    assert out.dtype == np.float32 and abs(out.std() - 5 / 255) < 0.002
    out16 = ak.Compose([ak.Noise(std=5)])(np.full((200, 200), 30000, np.uint16), rng=np.random.default_rng(0)).image
    assert abs(out16.std() - 5 * 257) < 60


def test_float64_images_are_refused_with_a_conversion_hint():
    with pytest.raises(TypeError, match=r"float64.*convert it first"):
        ak.Compose([ak.Gamma(0.5)])(np.zeros((8, 8)), rng=np.random.default_rng(0))
