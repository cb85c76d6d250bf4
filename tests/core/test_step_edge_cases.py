"""Behaviours a review found wanting, kept fixed: each test names what once went wrong."""

import numpy as np
import pytest

import augkit as ak
from augkit import functional as F


def centroid(img):
    img = img.astype(np.float64).reshape(img.shape[:2])
    yy, xx = np.indices(img.shape)
    return np.array([(img * xx).sum(), (img * yy).sum()]) / img.sum()


def square_image():
    img = np.zeros((200, 200), np.uint8)
    img[40:60, 120:140] = 255
    return img


@pytest.mark.parametrize("before", [[], [ak.Resize(100, 100)], [ak.HFlip()], [ak.Affine(rotate=90)],
                                    [ak.Resize(150, 300), ak.Affine(scale=0.8)]])
def test_cropbox_box_is_carried_through_earlier_geometry(before):
    pipe = ak.Compose(before + [ak.CropBox(margin=0.0), ak.Resize(20, 20)], points_unordered=True)
    out = pipe(square_image(), box=(119.5, 39.5, 139.5, 59.5))
    assert out.image[3:-3, 3:-3].min() > 200  # the crop is the white square, wherever it moved


def test_replay_uses_the_recorded_box_unless_given_one():
    pipe = ak.Compose([ak.CropBox(margin=0.0)])
    a = pipe(square_image(), box=(119.5, 39.5, 139.5, 59.5))
    moved = np.zeros((200, 200), np.uint8)
    moved[100:120, 20:40] = 255
    assert pipe.replay(a.record, moved).image.max() == 0
    assert pipe.replay(a.record, moved, box=(19.5, 99.5, 39.5, 119.5)).image.min() == 255


@pytest.mark.parametrize("kind, values", [("motion", (length, angle)) for length in (2, 3, 4, 5, 6, 7)
                                          for angle in (0, 30, 45, 90, 135, 170)]
                         + [("box", (k,)) for k in (1, 2, 3, 4, 5, 6)] + [("gauss", (s,)) for s in (0.5, 1.3, 2.0)])
def test_blurs_do_not_move_the_image_against_the_points(kind, values):
    img = np.zeros((41, 41), np.float32)
    img[20, 20] = 1000.0
    out = {"motion": lambda: F.motion_blur(img, *values), "box": lambda: F.box_blur(img, *values),
           "gauss": lambda: F.gaussian_blur(img, *values)}[kind]()
    assert np.abs(centroid(out) - (20, 20)).max() < 0.02


def test_box_blur_keeps_a_single_channel_axis():
    img = np.zeros((20, 30, 1), np.uint8)
    assert ak.Compose([ak.Blur(kind="box", ksize=(1, 5))])(img, rng=np.random.default_rng(0)).image.shape == (20, 30, 1)


@pytest.mark.parametrize("side", [200, 201, 203, 405])
def test_preshrink_keeps_the_edges_of_odd_sized_images(side):
    img = np.full((side, side), 200, np.uint8)
    out = ak.Compose([ak.Resize(50, 50)])(img).image
    assert out.min() == 200 and out.max() == 200


def test_preshrink_of_a_small_window_in_a_large_image_lands_the_point():
    rng = np.random.default_rng(0)
    big = np.zeros((1500, 1700), np.float32)
    p = np.array([1234.3, 456.7])
    yy, xx = np.mgrid[0:1500, 0:1700]
    big += np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * 12.0 ** 2)).astype(np.float32)
    pipe = ak.Compose([ak.CropBox(margin=0.0, shift=(-0.1, 0.1)), ak.Resize(40, 40)], points_unordered=True)
    out = pipe(big, p[None], rng=rng, box=(p[0] - 100, p[1] - 100, p[0] + 100, p[1] + 100))
    assert np.linalg.norm(centroid(np.where(out.image > 0.02, out.image, 0)) - out.points[0]) < 0.5


def test_shear_that_could_fold_the_image_is_refused():
    with pytest.raises(ValueError, match="fold"):
        ak.Affine(shear=45, shear_y=45)
    ak.Affine(shear=(-20, 20), shear_y=(-10, 10))  # fine


def test_single_choice_oneof_needs_no_generator():
    pipe = ak.Compose([ak.OneOf([ak.Resize(5, 5)])])
    assert pipe.deterministic
    assert pipe(np.zeros((10, 10), np.uint8)).image.shape == (5, 5)


def test_zero_weight_choice_is_never_taken():
    pipe = ak.Compose([ak.OneOf([ak.Resize(5, 5), ak.Resize(6, 6)], weights=[1, 0])])
    rng = np.random.default_rng(0)
    assert all(pipe(np.zeros((8, 8), np.uint8), rng=rng).record["steps"][0]["choice"] == 0 for _ in range(500))


def test_numpy_magnitudes_serialise(tmp_path):
    pipe = ak.Compose([ak.Affine(rotate=np.array([-5.0, 5.0]), scale=np.float64(1.1))], fill=np.uint8(7))
    ak.save(pipe, tmp_path / "p.yaml")
    assert ak.load(tmp_path / "p.yaml").to_dict() == pipe.to_dict()


def test_a_record_of_another_pipeline_is_refused():
    img = np.zeros((20, 20), np.uint8)
    rec = ak.Compose([ak.Compose([ak.Resize(10, 10)])])(img).record
    with pytest.raises(ValueError, match="does not fit"):
        ak.Compose([ak.Compose([ak.Resize(10, 10), ak.Resize(5, 5)])]).replay(rec, img)
    rec = ak.Compose([ak.Affine(rotate=3)])(img).record
    with pytest.raises(ValueError, match="does not fit"):
        ak.Compose([ak.OneOf([ak.Resize(4, 4)])]).replay(rec, img)


@pytest.mark.parametrize("box", [(5, 5, 1), (10, 10, 5, 20), ("a", 1, 2, 3)])
def test_bad_boxes_say_what_was_expected(box):
    with pytest.raises(ValueError, match=r"box must be four finite numbers \(x0, y0, x1, y1\)"):
        ak.Compose([ak.CropBox()])(np.zeros((20, 20), np.uint8), box=box)


def test_bad_fill_is_refused_at_construction():
    with pytest.raises(ValueError, match="fill must be a number"):
        ak.Compose([ak.Resize(5, 5)], fill="x")


def test_pad_and_centre_crop_put_the_odd_pixel_on_the_same_side():
    img = np.full((10, 10), 255, np.uint8)
    a = ak.Compose([ak.Pad(13, 13)])(img).image
    b = ak.Compose([ak.CenterCrop(13, 13)])(img).image
    np.testing.assert_array_equal(a, b)


def test_black_bars_keep_alpha_and_p0_steps_are_deterministic():
    img = np.full((20, 20, 4), 100, np.uint8)
    out = ak.Compose([ak.BlackBars(size=0.2, orientation="vertical")])(img).image
    assert (out[..., 3] == 100).all() and (out[:, :4, :3] == 0).all()
    assert ak.Compose([ak.Noise(p=0.0), ak.Erase(p=0.0)]).deterministic
    assert not ak.Compose([ak.Noise(std=3)]).deterministic


def test_photometric_that_changes_dtype_is_refused():
    import albumentations as A
    pipe = ak.Compose([ak.Photometric(A.Normalize(p=1.0))])
    with pytest.raises(TypeError, match="keep size and dtype"):
        pipe(np.zeros((8, 8, 3), np.uint8), rng=np.random.default_rng(0))
