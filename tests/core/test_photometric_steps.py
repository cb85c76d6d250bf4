"""Downscale and Sharpen (issue 27's first steps): the image changes the way the step says, the
points do not move, dtype, channels and alpha are kept, bad parameters are one line."""

import cv2
import numpy as np
import pytest

import augkit as ak
from augkit.errors import InputError
from helpers import blob_image, find_blobs

BLOBS = np.array([[40.3, 50.7], [95.2, 52.1], [70.6, 30.4], [68.9, 88.2]])


@pytest.mark.parametrize("step", [ak.Downscale(scale=0.5), ak.Downscale(scale=0.33), ak.Sharpen(amount=1.0)],
                         ids=["downscale-0.5", "downscale-0.33", "sharpen"])
def test_the_blobs_stay_where_the_points_are(step):
    img = blob_image(BLOBS, size=(120, 140), sigma=3.0)
    out = ak.Compose([step])(img, BLOBS)
    np.testing.assert_array_equal(out.points, BLOBS)
    np.testing.assert_allclose(find_blobs(out.image), out.points, atol=0.1)   # the peaks, where the points are


def _run(step, img):
    return ak.Compose([step])(img).image


def _detail(img) -> float:
    return float(cv2.Laplacian(img.astype(np.float32), cv2.CV_32F).std())


def test_downscale_removes_detail_and_sharpen_adds_it(face):
    img, _ = face
    smooth = cv2.GaussianBlur(img, (0, 0), 2.0)
    assert _detail(_run(ak.Downscale(scale=0.25), img)) < 0.5 * _detail(img)
    assert _detail(_run(ak.Sharpen(amount=1.0, sigma=1.0), smooth)) > 1.3 * _detail(smooth)


def test_no_op_parameters_give_the_image_back(face):
    img, _ = face
    assert _run(ak.Downscale(scale=1.0), img).tobytes() == img.tobytes()
    assert _run(ak.Sharpen(amount=0.0), img).tobytes() == img.tobytes()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("step", [ak.Downscale(scale=0.4), ak.Sharpen(amount=0.8)], ids=["downscale", "sharpen"])
def test_dtype_and_alpha_are_kept_and_the_input_is_not_written(face, dtype, step):
    img, _ = face
    top = {np.uint8: 255, np.uint16: 65535, np.float32: 1.0}[dtype]
    rgba = np.dstack([img, np.full(img.shape[:2], 200, np.uint8)]).astype(np.float64) / 255 * top
    rgba = rgba.astype(dtype)
    rgba.setflags(write=False)
    out = _run(step, rgba)
    assert out.dtype == rgba.dtype and out.shape == rgba.shape
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
    assert not np.array_equal(out[..., :3], rgba[..., :3])
    assert out.min() >= 0 and out.max() <= top


@pytest.mark.parametrize(("make", "words"), [
    (lambda: ak.Downscale(scale=0.0), ["Downscale", "scale"]),
    (lambda: ak.Downscale(scale=(0.5, 1.5)), ["Downscale", "scale"]),
    (lambda: ak.Sharpen(amount=-1), ["Sharpen", "amount"]),
    (lambda: ak.Sharpen(sigma=0), ["Sharpen", "sigma"]),
])
def test_bad_parameters_are_one_line_naming_the_step_and_field(make, words):
    with pytest.raises(InputError) as e:
        make()
    assert all(w in str(e.value) for w in words) and "\n" not in str(e.value)


def test_they_round_trip_through_a_pipeline_file(tmp_path, face):
    img, pts = face
    pipe = ak.Compose([ak.Downscale(scale=(0.3, 0.6), p=0.5), ak.Sharpen(amount=(0.2, 0.8), sigma=1.5)])
    ak.save(pipe, tmp_path / "p.yaml")
    again = ak.load(tmp_path / "p.yaml")
    assert again.to_dict() == pipe.to_dict()
    a = pipe(img, pts, rng=np.random.default_rng(4))
    b = again(img, pts, rng=np.random.default_rng(4))
    assert a.image.tobytes() == b.image.tobytes()
