"""The photometric steps of issue 27 (Downscale, Sharpen, ColorJitter, CLAHE, CoarseDropout,
RandomPatch, Caption): the image changes the way the step says, the points do not move, dtype,
channels and alpha are kept, the input is never written, bad parameters are one line."""

import json

import cv2
import numpy as np
import pytest

import augkit as ak
from augkit import functional as F
from augkit.errors import InputError
from helpers import blob_image, find_blobs

BLOBS = np.array([[40.3, 50.7], [95.2, 52.1], [70.6, 30.4], [68.9, 88.2]])


@pytest.mark.parametrize("step", [ak.Downscale(scale=0.5), ak.Downscale(scale=0.33), ak.Sharpen(amount=1.0),
                                  ak.ColorJitter(hue=30, saturation=1.3, value=0.9), ak.CLAHE(clip_limit=2.0)],
                         ids=["downscale-0.5", "downscale-0.33", "sharpen", "colorjitter", "clahe"])
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


NEW = {"downscale": lambda: ak.Downscale(scale=0.4), "sharpen": lambda: ak.Sharpen(amount=0.8),
       "colorjitter": lambda: ak.ColorJitter(hue=20, saturation=1.3, value=0.9),
       "clahe": lambda: ak.CLAHE(clip_limit=3.0), "coarsedropout": lambda: ak.CoarseDropout(n=5, fill="random"),
       "randompatch": lambda: ak.RandomPatch(n=3, area=0.05), "caption": lambda: ak.Caption(height=0.1, outline=0.1)}


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("name", sorted(NEW))
def test_dtype_and_alpha_are_kept_and_the_input_is_not_written(face, dtype, name):
    img, _ = face
    step = NEW[name]()
    top = {np.uint8: 255, np.uint16: 65535, np.float32: 1.0}[dtype]
    rgba = np.dstack([img, np.full(img.shape[:2], 200, np.uint8)]).astype(np.float64) / 255 * top
    rgba = rgba.astype(dtype)
    rgba.setflags(write=False)
    out = ak.Compose([step])(rgba, rng=np.random.default_rng(5)).image
    assert out.dtype == rgba.dtype and out.shape == rgba.shape
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
    assert not np.array_equal(out[..., :3], rgba[..., :3])
    assert out.min() >= 0 and out.max() <= top


@pytest.mark.parametrize(("make", "words"), [
    (lambda: ak.Downscale(scale=0.0), ["Downscale", "scale"]),
    (lambda: ak.Downscale(scale=(0.5, 1.5)), ["Downscale", "scale"]),
    (lambda: ak.Sharpen(amount=-1), ["Sharpen", "amount"]),
    (lambda: ak.Sharpen(sigma=0), ["Sharpen", "sigma"]),
    (lambda: ak.ColorJitter(hue=200), ["ColorJitter", "hue"]),
    (lambda: ak.ColorJitter(saturation=-0.5), ["ColorJitter", "saturation"]),
    (lambda: ak.CLAHE(clip_limit=0), ["CLAHE", "clip_limit"]),
    (lambda: ak.CLAHE(grid=0), ["CLAHE", "grid"]),
    (lambda: ak.CoarseDropout(height=(0.1, 2)), ["CoarseDropout", "height"]),
    (lambda: ak.CoarseDropout(fill="blue"), ["CoarseDropout", "fill"]),
    (lambda: ak.CoarseDropout(fill=True), ["CoarseDropout", "fill"]),
    (lambda: ak.Erase(fill=None), ["Erase", "fill"]),
    (lambda: ak.RandomPatch(source="/no/such/folder"), ["RandomPatch", "source"]),
    (lambda: ak.RandomPatch(area=1.5), ["RandomPatch", "area"]),
    (lambda: ak.Caption(font="arial"), ["Caption", "font"]),
    (lambda: ak.Caption(color=(300, 0, 0)), ["Caption", "color"]),
    (lambda: ak.Caption(position="top"), ["Caption", "position"]),
    (lambda: ak.Caption(vocabulary=[]), ["Caption", "vocabulary"]),
    (lambda: ak.Caption(height=0), ["Caption", "height"]),
])
def test_bad_parameters_are_one_line_naming_the_step_and_field(make, words):
    with pytest.raises(InputError) as e:
        make()
    assert all(w in str(e.value) for w in words) and "\n" not in str(e.value)


def test_they_round_trip_through_a_pipeline_file(tmp_path, face):
    img, pts = face
    cv2.imwrite(str(tmp_path / "patch.png"), img[::-1])
    pipe = ak.Compose([ak.Downscale(scale=(0.3, 0.6), p=0.5), ak.Sharpen(amount=(0.2, 0.8), sigma=1.5),
                       ak.ColorJitter(p=0.5), ak.CLAHE(p=0.5), ak.CoarseDropout(p=0.5),
                       ak.RandomPatch(source=str(tmp_path), p=0.5), ak.Caption(position="landmarks", p=0.5)])
    ak.save(pipe, tmp_path / "p.yaml")
    again = ak.load(tmp_path / "p.yaml")
    assert again.to_dict() == pipe.to_dict()
    a = pipe(img, pts, rng=np.random.default_rng(4))
    b = again(img, pts, rng=np.random.default_rng(4))
    assert a.image.tobytes() == b.image.tobytes()


def test_color_jitter_uint8_is_one_lut_pass_and_matches_float_hsv(face):
    img, _ = face
    out8 = F.color_jitter(img, 30.0, 1.2, 0.9)
    ref = F.color_jitter(img.astype(np.float32) / 255, 30.0, 1.2, 0.9) * 255
    assert np.abs(out8.astype(np.float64) - ref).mean() < 3.0     # 8-bit HSV rounding only
    hsv_in = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(int)
    hsv_out = cv2.cvtColor(out8, cv2.COLOR_RGB2HSV).astype(int)
    coloured = hsv_in[..., 1] > 60
    shift = np.mod(hsv_out[..., 0] - hsv_in[..., 0] + 90, 180) - 90
    assert abs(np.median(shift[coloured]) - 15) <= 1               # 30 degrees = 15 OpenCV hue steps
    assert F.color_jitter(img, 0.0, 1.0, 1.0).tobytes() == img.tobytes()
    gray = img[..., 0]
    np.testing.assert_array_equal(F.color_jitter(gray, 50.0, 2.0, 1.0), gray)   # gray: value only


def test_clahe_raises_local_contrast_of_a_flat_low_contrast_image():
    rng = np.random.default_rng(0)
    flat = (120 + rng.normal(0, 3, (128, 128, 3))).clip(0, 255).astype(np.uint8)
    out = _run(ak.CLAHE(clip_limit=4.0), flat)
    assert out.std() > 2 * flat.std()


def test_coarse_dropout_erases_n_holes_of_the_drawn_size():
    img = np.full((200, 300, 3), 128, np.uint8)
    out = ak.Compose([ak.CoarseDropout(n=4, height=0.1, width=0.1, fill=0)])(img, rng=np.random.default_rng(2))
    rects = out.record["steps"][0]["rects"]
    assert len(rects) == 4 and all(r[2] == pytest.approx(0.1) and r[3] == pytest.approx(0.1) for r in rects)
    erased = (out.image == 0).all(axis=2)
    assert 0 < erased.mean() <= 4 * 0.01 + 0.005


def test_random_patch_pastes_a_crop_of_another_image(tmp_path):
    other = np.zeros((50, 60, 3), np.uint8)
    other[..., 1] = 200                                              # a green picture
    cv2.imwrite(str(tmp_path / "green.png"), other)
    img = np.full((100, 100, 3), 50, np.uint8)
    step = ak.RandomPatch(source=str(tmp_path), n=2, area=0.04, aspect=1.0)
    out = ak.Compose([step])(img, rng=np.random.default_rng(0))
    green = (out.image[..., 1] == 200) & (out.image[..., 0] == 0)
    assert 0.03 <= green.mean() <= 0.08                              # two 20x20 patches, maybe overlapping
    assert all(p["file"] == 0 for p in out.record["steps"][0]["patches"])
    self_patch = ak.Compose([ak.RandomPatch(n=1, area=0.1)])(img, rng=np.random.default_rng(0)).image
    assert self_patch.tobytes() == img.tobytes()                     # a flat image: a patch of itself changes nothing


def test_caption_draws_text_over_the_landmarks_box_and_replays(face):
    img, pts = face
    pipe = ak.Compose([ak.Caption(position="landmarks", angle=0, outline=0, color=(255, 0, 255), height=0.06)],
                      scheme="ibug68")
    for seed in range(5):
        out = pipe(img, pts, rng=np.random.default_rng(seed))
        np.testing.assert_array_equal(out.points, pts)
        changed = np.argwhere((out.image != img).any(axis=2))
        cy, cx = changed.mean(axis=0)
        (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
        assert x0 - 2 <= cx <= x1 + 2 and y0 - 2 <= cy <= y1 + 2     # the text's centre is over the box
        rec = json.loads(json.dumps(out.record))
        assert pipe.replay(rec, img, pts).image.tobytes() == out.image.tobytes()


def test_caption_writes_cyrillic_with_its_own_strokes():
    blank = np.zeros((60, 400), np.uint8)
    v = {"text": ["ЖЩЮЯ"], "font": "simplex", "height": 0.4, "weight": 0.1, "outline": 0.0, "angle": 0.0,
         "color": [255, 255, 255], "outline_color": [0, 0, 0], "u": 0.5, "v": 0.5, "region": [0, 0, 1, 1]}
    cyr = ak.captions.render_caption(blank, v)
    ascii_q = ak.captions.render_caption(blank, {**v, "text": ["????"]})
    assert cyr.max() == 255 and not np.array_equal(cyr, ascii_q)    # not OpenCV's "?" for non-ASCII
    twins = ak.captions.render_caption(blank, {**v, "text": ["АВЕК"]})
    latin = ak.captions.render_caption(blank, {**v, "text": ["ABEK"]})
    np.testing.assert_array_equal(twins, latin)                      # look-alike capitals: the Latin glyphs


def test_the_caption_outline_lies_under_every_glyph():
    """The outline pass advances its glyphs as the fill pass does, so it surrounds every stroke."""
    from augkit.captions import FONTS, _masks
    for font in ("simplex", "triplex"):
        fill, edge = _masks(["ЖШ Hello ЮЯ", "World ФЦ"], FONTS[font], 20.0, 3, 2)
        assert (edge[fill > 200] > 200).all()
        assert (edge > 0).sum() > 1.15 * (fill > 0).sum()        # thicker (1.298x the least seen, OpenCV 5.1)


def test_random_patch_goes_on_past_an_unreadable_file(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"")
    img = np.full((64, 64, 3), 70, np.uint8)
    pipe = ak.Compose([ak.RandomPatch(source=str(tmp_path), n=2, area=0.1)])
    with pytest.warns(UserWarning, match="broken.jpg"):
        out = pipe(img, rng=np.random.default_rng(0))
    assert out.image.tobytes() == img.tobytes()          # patches of a flat image itself: nothing changes


def test_coarse_dropout_takes_a_colour_and_keeps_alpha():
    rgba = np.dstack([np.zeros((60, 60, 3), np.uint8), np.full((60, 60), 200, np.uint8)])
    out = ak.Compose([ak.CoarseDropout(n=3, height=0.2, width=0.2, fill=(255, 0, 0))])(
        rgba, rng=np.random.default_rng(1)).image
    red = (out[..., 0] == 255) & (out[..., 1] == 0)
    assert red.mean() > 0.02 and (out[..., 3] == 200).all()
