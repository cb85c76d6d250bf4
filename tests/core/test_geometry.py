"""Geometry: exact inverses, points that move with the pixels (blob test), flips with index swaps."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import augkit as ak
from augkit import geometry as G

FAST = settings(max_examples=60, deadline=None)


@st.composite
def fused_pipelines(draw, with_flip=True, scheme="ibug68"):
    """Random compositions of geometric steps (and a photometric one), random values and p."""
    steps = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["affine", "flip", "crop", "center", "resize", "minside", "pad",
                                     "letterbox", "box", "blur"] if with_flip else
                                    ["affine", "crop", "center", "resize", "minside", "pad", "letterbox", "blur"]))
        p = draw(st.sampled_from([0.0, 0.5, 1.0]))
        if kind == "affine":
            steps.append(ak.Affine(rotate=(-30, 30), scale=(0.7, 1.3), scale_x=(0.9, 1.1), translate=(-0.1, 0.1),
                                   shear=(-10, 10), shear_y=(-5, 5), p=p))
        elif kind == "flip":
            steps.append(ak.HFlip(p=p))
        elif kind == "crop":
            steps.append(ak.RandomCrop(draw(st.integers(20, 150)), draw(st.integers(20, 150)), p=p))
        elif kind == "center":
            steps.append(ak.CenterCrop(draw(st.integers(20, 150)), draw(st.integers(20, 150)), p=p))
        elif kind == "resize":
            steps.append(ak.Resize(draw(st.integers(16, 300)), draw(st.integers(16, 300)), p=p))
        elif kind == "minside":
            steps.append(ak.ScaleMinSide(draw(st.integers(16, 300)), p=p))
        elif kind == "pad":
            steps.append(ak.Pad(draw(st.integers(16, 300)), draw(st.integers(16, 300)), p=p))
        elif kind == "letterbox":
            steps.append(ak.LetterBox(draw(st.integers(16, 300)), draw(st.integers(16, 300)), p=p))
        elif kind == "box":
            steps.append(ak.CropBox(margin=(0.0, 0.3), square=draw(st.booleans()), shift=(-0.1, 0.1), p=p))
        else:
            steps.append(ak.Blur(sigma=(0.5, 1.0), p=p))
    return ak.Compose(steps, scheme=scheme)


@FAST
@given(pipe=fused_pipelines(), seed=st.integers(0, 2**32 - 1))
def test_invert_gives_back_the_input_points(face, pipe, seed):
    img, pts = face
    out = pipe(img, pts, rng=np.random.default_rng(seed))
    back = out.invert(out.points)
    assert np.abs(back - pts).max() < 1e-3
    # batched predictions (N, K, 2) invert the same way, and the input is not changed
    batch = np.stack([out.points, out.points + 1.0])
    keep = batch.copy()
    both = out.invert(batch)
    np.testing.assert_array_equal(batch, keep)
    assert np.abs(both[0] - pts).max() < 1e-3
    # a stored (JSON) record inverts the same
    import json
    rec = json.loads(json.dumps(out.record))
    assert np.abs(ak.invert_points(rec, out.points, "ibug68") - pts).max() < 1e-3


def blob_image(point, size=(120, 140), sigma=3.0):
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.exp(-((xx - point[0]) ** 2 + (yy - point[1]) ** 2) / (2 * sigma ** 2)).astype(np.float32)


def blob_centre(image, guess, radius):
    """Intensity centroid in a window around ``guess`` (the blob is centrally symmetric)."""
    h, w = image.shape[:2]
    x0, x1 = max(0, int(guess[0] - radius)), min(w, int(guess[0] + radius) + 1)
    y0, y1 = max(0, int(guess[1] - radius)), min(h, int(guess[1] + radius) + 1)
    win = image[y0:y1, x0:x1].astype(np.float64)
    win = np.where(win > 0.05 * win.max(), win, 0)  # drop interpolation dust at the window edge
    yy, xx = np.mgrid[y0:y1, x0:x1]
    return np.array([(win * xx).sum() / win.sum(), (win * yy).sum() / win.sum()])


GEOMETRIC_OPS = {
    "affine": lambda: ak.Affine(rotate=(-40, 40), scale=(0.7, 1.4), translate=(-0.1, 0.1), shear=(-15, 15)),
    "affine_per_axis": lambda: ak.Affine(scale_x=(0.6, 1.5), scale_y=(0.6, 1.5), shear_y=(-10, 10)),
    "hflip": lambda: ak.HFlip(),
    "random_crop": lambda: ak.RandomCrop(90, 100),
    "center_crop": lambda: ak.CenterCrop(91, 77),
    "crop_box": lambda: ak.CropBox(margin=0.4, shift=(-0.1, 0.1)),
    "resize_up": lambda: ak.Resize(173, 211),
    "resize_down": lambda: ak.Resize(70, 81),
    "resize_quarter": lambda: ak.Resize(30, 35),  # pre-shrink with INTER_AREA kicks in
    "min_side": lambda: ak.ScaleMinSide(97),
    "pad": lambda: ak.Pad(160, 170),
    "letterbox": lambda: ak.LetterBox(128, 128),
}


@pytest.mark.parametrize("name", sorted(GEOMETRIC_OPS))
@pytest.mark.parametrize("seed", range(6))
def test_blob_lands_on_the_moved_point_for_each_op(name, seed):
    rng = np.random.default_rng(seed)
    point = rng.uniform([45, 40], [95, 80])
    img = blob_image(point, sigma=6.0 if name == "resize_quarter" else 3.0)
    pipe = ak.Compose([GEOMETRIC_OPS[name]()], points_unordered=True)
    box = (point[0] - 20, point[1] - 20, point[0] + 20, point[1] + 20)
    out = pipe(img, point[None], rng=rng, box=box)
    (px, py), = out.points
    assert out.visible[0]
    scale = np.sqrt(abs(np.linalg.det(out.matrix[:2, :2])))
    found = blob_centre(out.image, (px, py), radius=max(4, 4 * 3.0 * scale * 2))
    assert np.linalg.norm(found - [px, py]) < 0.5, (name, found, (px, py))


@settings(max_examples=40, deadline=None)
@given(pipe=fused_pipelines(with_flip=False, scheme=None), seed=st.integers(0, 2**32 - 1))
def test_blob_lands_on_the_moved_point_for_random_compositions(pipe, seed):
    rng = np.random.default_rng(seed)
    point = rng.uniform([50, 45], [90, 75])
    img = blob_image(point, sigma=4.0)
    out = pipe(img, point[None], rng=rng)
    if not out.visible[0]:
        return  # cropped away: kept and flagged, checked elsewhere
    (px, py), = out.points
    w, h = out.record["out"]
    scale = np.sqrt(abs(np.linalg.det(out.matrix[:2, :2])))
    r = 4 * 4.0 * max(scale, 0.3) * 1.5
    if not (r <= px <= w - 1 - r and r <= py <= h - 1 - r):
        return  # the blob is cut by the frame edge: its centroid is not the point
    found = blob_centre(out.image, (px, py), radius=r)
    assert np.linalg.norm(found - [px, py]) < 0.5


def test_flip_swaps_ibug68_indices(face):
    img, pts = face
    out = ak.Compose([ak.HFlip()], scheme="ibug68")(img, pts)
    w = img.shape[1]
    mirrored = np.column_stack([w - 1 - pts[:, 0], pts[:, 1]])
    np.testing.assert_allclose(out.points[36], mirrored[45])
    np.testing.assert_allclose(out.points[45], mirrored[36])
    np.testing.assert_allclose(out.points[30], mirrored[30])  # nose tip on the midline
    np.testing.assert_array_equal(out.image, img[:, ::-1])
    # two flips: identity on pixels and on indices
    twice = ak.Compose([ak.HFlip(), ak.HFlip()], scheme="ibug68")(img, pts)
    np.testing.assert_allclose(twice.points, pts, atol=1e-9)
    np.testing.assert_array_equal(twice.image, img)


def test_fused_pipeline_is_one_warp_matching_sequential_matrices(face):
    img, pts = face
    steps = [ak.Affine(rotate=10, scale=1.1), ak.CenterCrop(150, 150), ak.Resize(64, 64)]
    out = ak.Compose(steps, points_unordered=True)(img, pts)
    m = G.resize((150, 150), (64, 64)) @ G.translate(-25, -15) @ G.about(G.rotate(10) @ G.scale(1.1), 99.5, 89.5)
    np.testing.assert_allclose(out.matrix, m, atol=1e-12)
    np.testing.assert_allclose(out.points, G.apply_points(m, pts), atol=1e-9)


def test_preshrink_does_not_alias():
    # a one-pixel checkerboard shrunk 8x must come out flat grey, not a moire pattern
    board = ((np.indices((400, 400)).sum(axis=0) % 2) * 255).astype(np.uint8)
    out = ak.Compose([ak.Resize(50, 50)])(board)
    assert abs(float(out.image.mean()) - 127.5) < 3
    assert float(out.image.std()) < 3


def test_matrix_builders_and_inverse():
    m = G.about(G.rotate(33) @ G.shear(7, -3) @ G.scale(1.3, 0.8), 12, -4) @ G.translate(3, 5)
    np.testing.assert_allclose(G.invert(m) @ m, np.eye(3), atol=1e-12)
    assert G.is_identity(G.hflip(10) @ G.hflip(10))
    with pytest.raises(ValueError, match="singular"):
        G.invert(G.scale(0.0, 1.0))
