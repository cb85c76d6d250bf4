"""Perspective: a projective 3x3 fused with the other geometry into one warp, exactly invertible.

The blob test here finds each blob's PEAK (a 2-D quadratic fitted to the log-intensity around the
brightest pixel): a projective map does not keep a blob centrally symmetric, so a centroid would
be biased, but the peak of the warped image is the image of the peak.
"""

import json

import cv2
import numpy as np
import pytest
from helpers import BlobModel, FixedModel, blob_image, random_face

import augkit as ak
from augkit import functional as F
from augkit import geometry as G
from augkit.tta import TTAPredictor, TTASpec, View
from augkit.tta.predictor import invert_sigma


def gaussian_blobs(points, size=(150, 170), sigma=4.0):
    """float32 (h, w) image: one Gaussian blob per point (far enough apart not to overlap)."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w))
    for x, y in points:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    return img.astype(np.float32)


def peak(image, guess, r=3):
    """Sub-pixel peak near ``guess``: least-squares quadratic fitted to log-intensity in a window
    around the brightest pixel there; its stationary point."""
    h, w = image.shape
    gx, gy = int(round(guess[0])), int(round(guess[1]))
    win = image[max(0, gy - 4):gy + 5, max(0, gx - 4):gx + 5]
    dy, dx = np.unravel_index(np.argmax(win), win.shape)
    cx, cy = max(0, gx - 4) + dx, max(0, gy - 4) + dy
    assert r <= cx < w - r and r <= cy < h - r, "peak too close to the frame edge"
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float64)
    z = np.log(np.maximum(image[cy - r:cy + r + 1, cx - r:cx + r + 1].astype(np.float64), 1e-6))
    a = np.stack([np.ones_like(xx), xx, yy, xx * xx, xx * yy, yy * yy], axis=-1).reshape(-1, 6)
    c = np.linalg.lstsq(a, z.ravel(), rcond=None)[0]
    hess = np.array([[2 * c[3], c[4]], [c[4], 2 * c[5]]])
    off = np.linalg.solve(hess, -c[1:3])
    return np.array([cx + off[0], cy + off[1]])


POINTS = np.array([[55.0, 50.0], [115.0, 52.0], [85.0, 80.0], [60.0, 108.0], [110.0, 105.0]])

PIPELINES = {
    "alone": lambda: [ak.Perspective(yaw=(-0.3, 0.3), pitch=(-0.3, 0.3), jitter=0.06)],
    "with_affine": lambda: [ak.Affine(rotate=(-25, 25), scale=(0.85, 1.15), shear=(-8, 8)),
                            ak.Perspective(jitter=0.08)],
    "perspective_then_affine": lambda: [ak.Perspective(yaw=(-0.3, 0.3), jitter=0.04),
                                        ak.Affine(rotate=(-25, 25), translate=(-0.05, 0.05))],
    "with_hflip": lambda: [ak.HFlip(), ak.Perspective(pitch=(-0.3, 0.3), jitter=0.05)],
    "with_resize_up": lambda: [ak.Perspective(yaw=(-0.3, 0.3), jitter=0.05), ak.Resize(230, 260)],
    "with_resize_down": lambda: [ak.Perspective(jitter=0.06), ak.Affine(rotate=(-10, 10)), ak.Resize(100, 115)],
}


@pytest.mark.parametrize("name", sorted(PIPELINES))
@pytest.mark.parametrize("seed", range(4))
def test_blob_peaks_land_within_a_tenth_of_a_pixel(name, seed):
    pipe = ak.Compose(PIPELINES[name](), points_unordered=True, preshrink=0)
    image = gaussian_blobs(POINTS)
    out = pipe(image, POINTS, rng=np.random.default_rng(seed))
    assert len(out.record["M"]) == 3, "a drawn corner jitter makes the call projective"
    for p in out.points:
        assert np.linalg.norm(peak(out.image, p) - p) < 0.1, (name, seed, peak(out.image, p), p)


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_invert_and_replay_are_exact(name, face):
    img, pts = face
    pipe = ak.Compose(PIPELINES[name]() + [ak.BrightnessContrast(brightness=(-0.1, 0.1))], scheme="ibug68")
    for seed in range(5):
        out = pipe(img, pts, rng=np.random.default_rng(seed))
        np.testing.assert_allclose(out.invert(out.points), pts, atol=1e-6)
        rec = json.loads(json.dumps(out.record))             # a stored record holds the 3x3
        np.testing.assert_allclose(ak.invert_points(rec, out.points, "ibug68"), pts, atol=1e-6)
        again = pipe.replay(rec, img, pts)
        assert again.image.tobytes() == out.image.tobytes()
        np.testing.assert_array_equal(again.points, out.points)


def test_a_flip_swaps_indices_under_perspective(face):
    img, pts = face
    pipe = ak.Compose([ak.Perspective(yaw=0.2), ak.HFlip()], scheme="ibug68")
    out = pipe(img, pts)
    direct = G.apply_points(out.matrix, pts)
    np.testing.assert_allclose(out.points, direct[ak.IBUG68.perm])


def test_p_zero_gives_todays_warp_affine_result_bit_for_bit(face):
    img, pts = face
    steps = [ak.Affine(rotate=(-20, 20), scale=(0.5, 1.1)), ak.HFlip(p=0.5), ak.Resize(64, 64)]
    with_p0 = ak.Compose(steps[:1] + [ak.Perspective(yaw=(-0.2, 0.2), jitter=0.1, p=0)] + steps[1:], scheme="ibug68")
    today = ak.Compose(steps, scheme="ibug68")
    for seed in range(6):
        a = with_p0(img, pts, rng=np.random.default_rng(seed))
        b = today(img, pts, rng=np.random.default_rng(seed))
        assert len(a.record["M"]) == 2                     # still an affine record
        assert a.image.tobytes() == b.image.tobytes()
        np.testing.assert_array_equal(a.points, b.points)
        m = np.eye(3)
        m[:2] = b.record["M"]
        assert F.warp(img, m, (64, 64)).tobytes() == a.image.tobytes()   # the same single warpAffine


def test_zero_magnitudes_leave_the_call_affine(face):
    img, pts = face
    out = ak.Compose([ak.Perspective(), ak.Affine(rotate=5)])(img, pts)
    assert len(out.record["M"]) == 2
    ref = ak.Compose([ak.Affine(rotate=5)])(img, pts)
    assert out.image.tobytes() == ref.image.tobytes()


def test_only_a_projective_call_uses_warp_perspective(monkeypatch, face):
    img, pts = face
    called = []
    real_affine, real_persp = cv2.warpAffine, cv2.warpPerspective
    monkeypatch.setattr(cv2, "warpAffine", lambda *a, **k: called.append("affine") or real_affine(*a, **k))
    monkeypatch.setattr(cv2, "warpPerspective", lambda *a, **k: called.append("perspective") or real_persp(*a, **k))
    ak.Compose([ak.Affine(rotate=10), ak.Resize(64, 64)])(img, pts)
    assert called == ["affine"]
    called.clear()
    ak.Compose([ak.Affine(rotate=10), ak.Perspective(yaw=0.1), ak.Resize(64, 64)])(img, pts)
    assert called == ["perspective"]                    # one warp for the whole pipeline


def test_preshrink_uses_the_smallest_local_scale():
    m = G.perspective([[0, 0], [199, 0], [199, 199], [0, 199]], [[0, 30], [60, 0], [60, 60], [0, 50]])
    size = (61, 61)
    fx, fy = F._shrink_factors(m, size, (200, 200))
    # a dense numeric Jacobian over the source that the output reads
    xs, ys = np.meshgrid(np.linspace(0, 199, 41), np.linspace(0, 199, 41))
    src = np.stack([xs.ravel(), ys.ravel()], axis=1)
    eps = 1e-4
    jx = np.linalg.norm(G.apply_points(m, src + [eps, 0]) - G.apply_points(m, src), axis=1) / eps
    jy = np.linalg.norm(G.apply_points(m, src + [0, eps]) - G.apply_points(m, src), axis=1) / eps
    assert fx == pytest.approx(jx.min(), rel=2e-2) and fy == pytest.approx(jy.min(), rel=2e-2)
    assert jx.max() > 1.5 * jx.min()                     # the scale does vary across the image


def test_preshrink_still_removes_aliasing_under_perspective():
    """A fine checkerboard shrunk about 4x through a perspective: with the pre-shrink the result is
    nearly flat grey (the pattern averaged away), without it the warp aliases."""
    yy, xx = np.mgrid[0:400, 0:400]
    board = (((xx // 1) + (yy // 1)) % 2 * 255).astype(np.uint8)
    steps = [ak.Perspective(yaw=0.2, pitch=-0.1), ak.Resize(90, 90)]
    smooth = ak.Compose(steps)(board).image.astype(np.float64)
    aliased = ak.Compose(steps, preshrink=0)(board).image.astype(np.float64)
    inner = (slice(20, 70), slice(20, 70))
    assert smooth[inner].std() < 20 < aliased[inner].std()


def test_preshrink_keeps_the_geometry():
    image = gaussian_blobs(POINTS * 3, size=(450, 510), sigma=12.0)
    pipe = ak.Compose([ak.Perspective(yaw=0.25, jitter=0.0), ak.Resize(150, 170)], points_unordered=True)
    out = pipe(image, POINTS * 3)
    for p in out.points:
        assert np.linalg.norm(peak(out.image, p) - p) < 0.1


def test_perspective_as_a_tta_view_inverts_exactly():
    """A model that answers the same points on every view: each projective view's member must come
    back through the exact inverse of its fused matrix (checked against numpy's own inverse)."""
    fixed = np.array([[20.0, 30.0], [70.0, 35.0], [45.0, 60.0], [40.0, 85.0]])
    view = View.from_steps("yaw", [ak.Perspective(yaw=0.15, pitch=-0.1)])
    images = [np.full((120, 140, 3), 90, np.uint8), np.full((120, 140, 3), 30, np.uint8)]
    res = TTAPredictor(FixedModel(fixed), TTASpec([view])).predict(images)
    for img, got in zip(images, res.points):
        m = view.pipeline(img).matrix
        q = np.hstack([fixed, np.ones((4, 1))]) @ np.linalg.inv(m).T
        np.testing.assert_allclose(got, q[:, :2] / q[:, 2:], atol=1e-9)


def test_perspective_views_map_blobs_back():
    rng = np.random.default_rng(0)
    images, truth = [], []
    for _ in range(4):
        pts = random_face(rng)
        images.append(blob_image(pts, sigma=3.0))
        truth.append(pts)
    views = TTASpec([View.from_steps("identity", []),
                     View.from_steps("yaw", [ak.Perspective(yaw=0.15)]),
                     View.from_steps("pitch", [ak.Perspective(pitch=-0.15)])])
    plain = TTAPredictor(BlobModel(), "none").predict(images).points
    tta = TTAPredictor(BlobModel(), views).predict(images).points
    truth = np.stack(truth)
    # the blob "model" is close to exact on every view, so the merged points are as good as plain
    assert np.abs(tta - truth).max() < 0.5
    assert np.abs(tta - plain).max() < 0.5


def test_sigma_maps_back_by_the_local_area_of_a_projective_view():
    m = G.perspective([[0, 0], [99, 0], [99, 99], [0, 99]], [[0, 10], [99, 0], [99, 99], [0, 89]])
    rec = {"M": m.tolist(), "flips": 0}
    out_pts = np.array([[10.0, 50.0], [90.0, 50.0]])
    sig = np.array([2.0, 2.0])
    back = invert_sigma(rec, sig, None, out_pts)
    # a small circle of radius σ around each output point, mapped back: its area gives the σ
    t = np.linspace(0, 2 * np.pi, 2000, endpoint=False)
    for k, (p, s) in enumerate(zip(out_pts, sig)):
        ring = p + 1e-3 * np.stack([np.cos(t), np.sin(t)], axis=1)
        src = G.apply_points(G.invert(m), ring)
        x, y = (src - src.mean(axis=0)).T                  # centred: no cancellation in the area
        area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
        assert back[k] == pytest.approx(s * np.sqrt(area / (np.pi * 1e-6)), rel=1e-3)
    assert back[0] != pytest.approx(back[1], rel=1e-2)      # it varies across the view
    with pytest.raises(ValueError, match="needs the points"):
        invert_sigma(rec, sig)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"jitter": 0.3}, "jitter"), ({"jitter": (0.0, 0.1)}, "jitter"), ({"yaw": 0.7}, "yaw"),
    ({"pitch": -0.6}, "pitch"), ({"yaw": 0.4, "jitter": 0.05}, "fold"), ({"yaw": 0.3, "pitch": 0.3, "jitter": 0.1}, "fold"),
    ({"p": 2}, "p"),
])
def test_bad_parameters_are_one_clear_line(kwargs, field):
    with pytest.raises(ValueError, match="Perspective") as e:
        ak.Perspective(**kwargs)
    assert field in str(e.value) and "\n" not in str(e.value)


def test_a_foreign_projective_record_is_refused(face):
    img, pts = face
    pipe = ak.Compose([ak.Perspective(jitter=0.05)], scheme="ibug68")
    out = pipe(img, pts, rng=np.random.default_rng(1))
    bad = json.loads(json.dumps(out.record))
    bad["M"][2][0] += 1e-3
    with pytest.raises(ValueError, match="'M'"):
        pipe.replay(bad, img, pts)


def test_the_closed_form_frame_to_quad_matches_the_general_solve():
    rng = np.random.default_rng(0)
    for _ in range(20):
        w, h = rng.integers(20, 400, 2)
        src = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])
        quad = src + rng.uniform(-0.2, 0.2, (4, 2)) * (w, h)
        fast, general = G.normalised(G.rect_to_quad(w, h, quad)), G.perspective(src, quad)
        np.testing.assert_allclose(fast, general, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(G.apply_points(fast, src), quad, atol=1e-9)
    shifted = np.array([[-0.5, -0.5], [9.5, -0.5], [9.5, 9.5], [-0.5, 9.5]]) + (3.0, -2.0)
    np.testing.assert_allclose(G.rect_to_quad(10, 10, shifted), G.translate(3.0, -2.0), atol=1e-12)  # affine stays affine


def test_the_strongest_allowed_settings_never_fold_the_image():
    """At the limits (corners moved up to just under a quarter of the size per axis) no draw puts
    the horizon inside the frame: the quadrilateral stays convex."""
    step = ak.Perspective(yaw=(-0.3, 0.3), pitch=(-0.3, 0.3), jitter=0.099)
    rng = np.random.default_rng(0)
    w, h = 100, 80
    frame = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])
    for _ in range(2000):
        v = step.draw(rng, (w, h))
        for extreme in ("yaw", "pitch"):             # push the keystones to their ends too
            v[extreme] = 0.3 * np.sign(v[extreme] or 1.0)
        m, _ = step.matrix(v, (w, h))
        assert (G.projective_divisors(m, frame) > 0).all()
        quad = G.apply_points(m, frame)
        edges = np.roll(quad, -1, axis=0) - quad
        cross = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
        assert (cross > 0).all() or (cross < 0).all()   # convex
