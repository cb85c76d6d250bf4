"""What the tests share (a module, not a test file: pytest collects nothing here): where the
68-point set is (``YTF68``; ``AUGKIT_YTF68`` points elsewhere), and for the TTA tests synthetic
"faces" of coloured blobs and content-based "models" that find them the way a trained regressor
would.

Layout ``BLOBS4`` (4 points): 0 = left eye, 1 = right eye (a flip pair, both red), 2 = nose
(green), 3 = mouth (blue). The model finds the red blobs and calls the one further LEFT in the
image point 0, as a real model labels by position: a flip view that is not swapped back would
put the left eye where the right eye is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from augkit.schemes import Scheme

ROOT = Path(__file__).resolve().parents[1]   # the repository
YTF68 = Path(os.environ.get("AUGKIT_YTF68") or ROOT.parent / "shared" / "data" / "ytf68")

BLOBS4 = Scheme("blobs4", 4, ((0, 1),), norm=(0, 1))
SIGMA = 2.5


def python_prints_ok(code: str) -> None:
    """Run ``code`` in a fresh interpreter (what a user's first import sees); it must print ok."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def blob_image(points, size=(120, 140), sigma=SIGMA, noise=0, seed=0) -> np.ndarray:
    """uint8 RGB (h, w) image with Gaussian blobs: points 0, 1 red, 2 green, 3 blue."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    channel = [0, 0, 1, 2]
    for (x, y), c in zip(points, channel):
        img[..., c] += 255.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    if noise:
        img += np.random.default_rng(seed).normal(0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def random_face(rng, size=(120, 140)):
    """Points of a plausible upright blob face inside a (h, w) image."""
    h, w = size
    cx, cy = rng.uniform(0.4, 0.6) * w, rng.uniform(0.4, 0.55) * h
    s = rng.uniform(0.18, 0.25) * min(h, w)
    pts = np.array([[cx - s, cy - 0.6 * s], [cx + s, cy - 0.6 * s], [cx, cy + 0.1 * s], [cx, cy + 0.8 * s]])
    return pts + rng.normal(0, 1.0, pts.shape)


def _centroid(weight, xx, yy):
    tot = weight.sum()
    if tot <= 0:
        return np.array([np.nan, np.nan])
    return np.array([(weight * xx).sum() / tot, (weight * yy).sum() / tot])


def find_blobs(image) -> np.ndarray:
    """The content "model" on one image: (4, 2) points."""
    img = image.astype(np.float64)
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]

    def mass(c, o1, o2):
        m = np.clip(c - np.maximum(o1, o2), 0, None)
        return np.where(m > 0.25 * m.max(), m, 0.0) if m.max() > 0 else m

    red = mass(r, g, b)
    c = _centroid(red, xx, yy)
    left = red * (xx < c[0])
    right = red * (xx >= c[0])
    return np.stack([_centroid(left, xx, yy), _centroid(right, xx, yy),
                     _centroid(mass(g, r, b), xx, yy), _centroid(mass(b, r, g), xx, yy)])


class BlobModel:
    """A callable model: uint8 NHWC batch -> (N, 4, 2), counting its calls and batch sizes."""

    def __init__(self, preprocess=None, scheme=BLOBS4):
        self.preprocess, self.scheme = preprocess, scheme
        self.calls, self.sizes = 0, []
        self.n_points = 4

    def __call__(self, batch):
        assert batch.dtype == np.uint8 and batch.ndim == 4 and batch.shape[-1] == 3
        self.calls += 1
        self.sizes.append(len(batch))
        return np.stack([find_blobs(im) for im in batch])


class FixedModel:
    """Ignores the image: returns the same (K, 2) points for every input, counting calls. Returns
    the SAME array object each call (to catch in-place changes)."""

    def __init__(self, points, preprocess=None, scheme=None):
        self.points = np.asarray(points, dtype=np.float64)
        self.preprocess, self.scheme = preprocess, scheme
        self.calls, self.sizes = 0, []
        self._out = None

    def __call__(self, batch):
        self.calls += 1
        self.sizes.append(len(batch))
        if self._out is None or len(self._out) != len(batch):
            self._out = np.repeat(self.points[None], len(batch), axis=0)
        self.snapshot = self._out.copy()
        return self._out


def write_blob_dataset(folder, n=12, seed=0, size=(120, 140), test_points=True, bad=()):
    """A competition-layout folder: images/*.png, landmarks.csv (TSV) and test_points.csv.
    Names in ``bad`` are written as garbage bytes. Returns (names, points)."""
    import os
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    names, pts = [], []
    import cv2
    for i in range(n):
        hw = (size[0] + int(rng.integers(-10, 10)), size[1] + int(rng.integers(-10, 10)))
        p = random_face(rng, hw)
        name = f"face_{i:03d}.png"
        path = os.path.join(folder, "images", name)
        if name in bad:
            with open(path, "wb") as f:
                f.write(b"not an image")
        else:
            cv2.imwrite(path, cv2.cvtColor(blob_image(p, hw), cv2.COLOR_RGB2BGR))
        names.append(name)
        pts.append(p)
    pts = np.array(pts)
    header = "file_name\t" + "\t".join(f"Point_{k}_{a}" for k in range(4) for a in "XY")
    lines = [header] + [n + "\t" + "\t".join(f"{v:.3f}" for v in p.reshape(-1)) for n, p in zip(names, pts)]
    with open(os.path.join(folder, "landmarks.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if test_points:
        order = rng.permutation(n)
        with open(os.path.join(folder, "test_points.csv"), "w") as f:
            f.write("file_name\tpoint_index_list\n")
            for j in order:
                idx = sorted(rng.choice(4, 3, replace=False).tolist())
                f.write(f"{names[j]}\t{idx}\n")
    return names, pts


def blob_set(tmp_path, seed: int, n: int = 10):
    """A blob dataset in ``tmp_path/blobs`` and a stand-in checkpoint file (the tests replace the
    loader): ``(folder, names, points, checkpoint path)``."""
    folder = tmp_path / "blobs"
    names, pts = write_blob_dataset(folder, n=n, seed=seed)
    ck = tmp_path / "model.pt"
    ck.write_bytes(b"stand-in")
    return folder, names, pts, str(ck)


def write_oof_folds(root, pred, spread, folds: int = 2) -> np.ndarray:
    """The out-of-fold arrays an audit writes, for rows ``i % folds``: ``root/fold<f>/oof_*.npy``
    (points, spread, a small pose spread). Returns the (N,) fold of each row."""
    import augkit.audit.folds as A
    fold_of = np.arange(len(pred)) % folds
    for f in range(folds):
        d = Path(root) / f"fold{f}"
        d.mkdir()
        sel = fold_of == f
        for name, arr in ((A.OOF_POINTS, pred[sel]), (A.OOF_SPREAD, spread[sel]),
                          (A.OOF_POSE, np.full((int(sel.sum()), 3), 0.01))):
            np.save(d / name, arr.astype(np.float32))
    return fold_of
