"""Synthetic faces with the 68 iBUG points, drawn on the fly (numpy + OpenCV, no files shipped).

Each face is a 3-D-ish template (jaw, brows, nose, eyes, lips) with identity variation (face
width, eye spacing, nose length, mouth width), expression (mouth opening, smile, brow raise, eye
opening), head pose (yaw and pitch by projecting the template from a cylinder, roll, scale and
shift in the frame), skin tone, hair, directional lighting, and background clutter (shapes, lines,
texture). The landmarks are the projected template points, so they are exact.

A face is a pure function of ``(seed, index)``: :class:`SyntheticFaces` draws the geometry of
every face up front (cheap: points and image sizes, for the mean-shape baseline and the metrics)
and renders an image only when asked.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["SyntheticFaces", "face_geometry", "make_face", "render_face", "template"]

_SHIFT = 4  # cv2 sub-pixel drawing: coordinates x 16
_ONE = 1 << _SHIFT


def template() -> np.ndarray:
    """The canonical 68-point face, x in [-1, 1] (image left = subject's right), y down. Shape: (68, 2)."""
    p = np.zeros((68, 2))
    t = np.linspace(0.0, math.pi, 17)
    p[0:17, 0] = -np.cos(t) * 0.95 * (1 - 0.12 * np.sin(t))
    p[0:17, 1] = -0.15 + 1.15 * np.sin(t)
    j = np.arange(5)
    p[17:22, 0] = np.linspace(-0.78, -0.14, 5)
    p[17:22, 1] = -0.47 - 0.12 * np.sin(math.pi * (j + 0.5) / 5)
    p[22:27, 0] = -p[21:16:-1, 0]
    p[22:27, 1] = p[21:16:-1, 1]
    p[27:31, 0] = 0.0
    p[27:31, 1] = [-0.3, -0.15, 0.0, 0.15]
    p[31:36] = [[-0.2, 0.27], [-0.1, 0.31], [0.0, 0.33], [0.1, 0.31], [0.2, 0.27]]
    for c, idx in ((-0.42, (36, 37, 38, 39, 40, 41)), (0.42, (45, 44, 43, 42, 47, 46))):
        # outer corner, top outer, top inner, inner corner, bottom inner, bottom outer (mirrored for the right eye)
        s = 1.0 if c < 0 else -1.0  # outer corners away from the midline
        rel = [(-0.15, 0.0), (-0.06, -0.065), (0.06, -0.065), (0.15, 0.0), (0.06, 0.05), (-0.06, 0.05)]
        for i, (dx, dy) in zip(idx, rel):
            p[i] = [c + s * dx, -0.25 + dy]
    p[48:60] = [[-0.3, 0.6], [-0.2, 0.54], [-0.08, 0.51], [0.0, 0.53], [0.08, 0.51], [0.2, 0.54], [0.3, 0.6],
                [0.2, 0.68], [0.1, 0.71], [0.0, 0.72], [-0.1, 0.71], [-0.2, 0.68]]
    p[60:68] = [[-0.25, 0.6], [-0.1, 0.58], [0.0, 0.585], [0.1, 0.58], [0.25, 0.6], [0.1, 0.62], [0.0, 0.625],
                [-0.1, 0.62]]
    return p


_TEMPLATE = template()
_FOREHEAD = np.stack([0.95 * np.cos(np.linspace(0, math.pi, 9)), -0.15 - 0.95 * np.sin(np.linspace(0, math.pi, 9))], 1)
_LOWER_LIP = [55, 56, 57, 58, 59, 65, 66, 67]
_CORNERS = [48, 54, 60, 64]


def _depth(xy: np.ndarray) -> np.ndarray:
    z = 0.75 * np.sqrt(np.clip(1 - xy[:, 0] ** 2, 0, 1))
    return z


def face_geometry(rng: np.random.Generator, size_range=(120, 200)) -> dict:
    """Draw everything about one face except pixels: image size, points (68, 2), and render values."""
    w = int(rng.integers(size_range[0], size_range[1] + 1))
    h = int(rng.integers(size_range[0], size_range[1] + 1))
    p = _TEMPLATE.copy()
    extra = _FOREHEAD.copy()
    # identity
    p[:, 0] *= rng.uniform(0.85, 1.1)
    extra[:, 0] *= 1.0
    spread = rng.uniform(-0.05, 0.06)
    p[36:42, 0] -= spread
    p[42:48, 0] += spread
    p[17:22, 0] -= spread * 0.7
    p[22:27, 0] += spread * 0.7
    nose = rng.uniform(-0.06, 0.08)
    p[29:36, 1] += nose
    p[48:68, 0] *= rng.uniform(0.85, 1.2)
    p[48:68, 1] += rng.uniform(-0.04, 0.06)
    # expression
    open_ = rng.uniform(0.0, 0.22) if rng.random() < 0.5 else 0.0
    p[_LOWER_LIP, 1] += open_
    p[8, 1] += 0.6 * open_
    p[5:12, 1] += 0.3 * open_ * np.sin(np.linspace(0.3, math.pi - 0.3, 7))
    smile = rng.uniform(-0.05, 0.09)
    p[_CORNERS, 1] -= smile
    p[_CORNERS, 0] *= 1 + smile
    p[17:27, 1] -= rng.uniform(-0.03, 0.1)
    eye_open = rng.uniform(0.25, 1.3, size=2)
    for k, idx in enumerate((np.r_[36:42], np.r_[42:48])):
        cy = p[idx, 1][[0, 3]].mean()
        p[idx, 1] = cy + (p[idx, 1] - cy) * eye_open[k]
    # pose: project from a rough 3-D surface
    yaw = math.radians(rng.uniform(-40, 40))
    pitch = math.radians(rng.uniform(-15, 15))
    allp = np.concatenate([p, extra])
    z = _depth(allp)
    z[27:31] += np.array([0.1, 0.2, 0.3, 0.38])
    z[31:36] += np.array([0.12, 0.2, 0.24, 0.2, 0.12])
    z[48:68] += 0.08
    x = allp[:, 0] * math.cos(yaw) + z * math.sin(yaw)
    z2 = -allp[:, 0] * math.sin(yaw) + z * math.cos(yaw)
    y = allp[:, 1] * math.cos(pitch) - z2 * math.sin(pitch)
    proj = np.stack([x, y], 1)
    # similarity into the frame
    roll = math.radians(rng.uniform(-30, 30))
    scale = rng.uniform(0.2, 0.36) * min(w, h)
    cx = w / 2 + rng.uniform(-0.14, 0.14) * w
    cy = h / 2 + rng.uniform(-0.1, 0.14) * h
    c, s = math.cos(roll), math.sin(roll)
    rot = np.array([[c, -s], [s, c]])
    pts = proj @ rot.T * scale + [cx, cy]
    return {
        "size": (w, h), "points": pts[:68], "forehead": pts[68:], "scale": scale, "yaw": yaw, "open": open_,
        "skin": np.clip(np.array([70.0, 45, 35]) + rng.uniform(0, 1) * np.array([175.0, 160, 145])
                        + rng.uniform(-15, 15, 3), 0, 255), "hair": rng.uniform(0, 90, 3) * rng.uniform(0.3, 1.0),
        "has_hair": rng.random() < 0.7, "lip": rng.uniform([120, 40, 40], [210, 110, 120]),
        "iris": rng.uniform(10, 120, 3), "brow": rng.uniform(10, 80, 3),
        "light": (rng.uniform(0, 2 * math.pi), rng.uniform(0.0, 0.6)), "blur": rng.uniform(0, 1.2),
        "noise": rng.uniform(0, 8), "bg_seed": int(rng.integers(2**31)),
    }


def _q(points) -> np.ndarray:
    """Points to cv2's fixed-point int32 (sub-pixel drawing)."""
    return np.round(np.asarray(points) * _ONE).astype(np.int32)


def _background(rng, w, h) -> np.ndarray:
    base = rng.uniform(0, 255, 3)
    low = rng.uniform(-60, 60, (3, 3, 3))
    img = np.clip(base + cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 14))):
        col = tuple(float(v) for v in rng.uniform(0, 255, 3))
        kind = rng.integers(4)
        a = rng.uniform([0, 0], [w, h])
        b = rng.uniform([0, 0], [w, h])
        if kind == 0:
            cv2.rectangle(img, tuple(int(v) for v in a), tuple(int(v) for v in b), col, -1)
        elif kind == 1:
            cv2.circle(img, tuple(int(v) for v in a), int(rng.uniform(3, 0.3 * min(w, h))), col, -1, cv2.LINE_AA)
        elif kind == 2:
            cv2.line(img, tuple(int(v) for v in a), tuple(int(v) for v in b), col, int(rng.integers(1, 5)), cv2.LINE_AA)
        else:
            poly = rng.uniform([0, 0], [w, h], (int(rng.integers(3, 6)), 2)).astype(np.int32)
            cv2.fillPoly(img, [poly], col, cv2.LINE_AA)
    tex = rng.normal(0, rng.uniform(2, 14), (max(2, h // 4), max(2, w // 4), 1))
    img = np.clip(img + cv2.resize(tex, (w, h))[..., None], 0, 255).astype(np.uint8)
    return img


def render_face(g: dict) -> np.ndarray:
    """Draw the face ``g`` (from :func:`face_geometry`) as uint8 RGB. Shape: (h, w, 3)."""
    w, h = g["size"]
    rng = np.random.default_rng(g["bg_seed"])
    img = _background(rng, w, h)
    p, s = g["points"], g["scale"]
    lt = cv2.LINE_AA
    head = np.concatenate([p[0:17], g["forehead"][::-1][1:-1]])
    if g["has_hair"]:
        hair = np.concatenate([g["forehead"] * 1.0, p[[16, 0]]])
        centre = head.mean(0)
        hair = centre + (hair - centre) * np.array([1.12, 1.18])
        cv2.fillPoly(img, [_q(hair)], tuple(float(v) for v in g["hair"]), lt, _SHIFT)
    skin = tuple(float(v) for v in g["skin"])
    cv2.fillPoly(img, [_q(head)], skin, lt, _SHIFT)
    dark = tuple(float(v) * 0.7 for v in g["skin"])
    cv2.polylines(img, [_q(p[0:17])], False, dark, max(1, int(0.03 * s)), lt, _SHIFT)
    # eyes: sclera, iris clipped to the eye, lid line
    for idx in (np.r_[36:42], np.r_[42:48]):
        eye = p[idx]
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [_q(eye)], 255, lt, _SHIFT)
        sclera = np.full_like(img, 235)
        c = eye.mean(0)
        r = 0.5 * np.linalg.norm(eye[0] - eye[3]) * 0.45
        cv2.circle(sclera, tuple(int(v) for v in np.round(c * _ONE)), int(r * _ONE),
                   tuple(float(v) for v in g["iris"]), -1, lt, _SHIFT)
        cv2.circle(sclera, tuple(int(v) for v in np.round(c * _ONE)), int(0.45 * r * _ONE), (10, 10, 10), -1, lt, _SHIFT)
        a = mask[..., None].astype(np.float32) / 255
        img = (img * (1 - a) + sclera * a).astype(np.uint8)
        cv2.polylines(img, [_q(eye)], True, (30, 20, 20), max(1, int(0.025 * s)), lt, _SHIFT)
    brow = tuple(float(v) for v in g["brow"])
    for idx in (np.r_[17:22], np.r_[22:27]):
        cv2.polylines(img, [_q(p[idx])], False, brow, max(1, int(0.07 * s)), lt, _SHIFT)
    nose = tuple(float(v) * 0.6 for v in g["skin"])
    cv2.polylines(img, [_q(p[27:31])], False, nose, max(1, int(0.03 * s)), lt, _SHIFT)
    cv2.polylines(img, [_q(p[[31, 32, 33, 34, 35]])], False, nose, max(1, int(0.03 * s)), lt, _SHIFT)
    for i in (32, 34):
        cv2.circle(img, tuple(int(v) for v in np.round(p[i] * _ONE)), int(0.03 * s * _ONE), (40, 25, 25), -1, lt, _SHIFT)
    cv2.fillPoly(img, [_q(p[48:60])], tuple(float(v) for v in g["lip"]), lt, _SHIFT)
    inner = p[60:68]
    if g["open"] > 0.02:
        cv2.fillPoly(img, [_q(inner)], (35, 10, 15), lt, _SHIFT)
    else:
        cv2.polylines(img, [_q(inner[[0, 1, 2, 3, 4]])], False, (60, 20, 25), max(1, int(0.02 * s)), lt, _SHIFT)
    # directional light over the whole frame
    ang, strength = g["light"]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = (xx - w / 2) * math.cos(ang) + (yy - h / 2) * math.sin(ang)
    gain = 1 + strength * d / max(w, h)
    img = np.clip(img * gain[..., None], 0, 255)
    if g["blur"] > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), g["blur"])
    if g["noise"] > 0.5:
        img = img + rng.normal(0, g["noise"], img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


class SyntheticFaces:
    """``n`` synthetic faces fixed by ``seed``: ``points`` (n, 68, 2) and ``sizes`` (n, 2) up front,
    pixels on demand with :meth:`image`."""

    def __init__(self, n: int, seed: int = 0, size_range=(120, 200)):
        self.n, self.seed = int(n), int(seed)
        self._geo = [face_geometry(np.random.default_rng(np.random.SeedSequence([self.seed, 7919, i])), size_range)
                     for i in range(self.n)]
        self.points = np.stack([g["points"] for g in self._geo]) if self.n else np.zeros((0, 68, 2))
        self.sizes = np.array([g["size"] for g in self._geo], dtype=np.int64).reshape(-1, 2)
        self.files = [f"synthetic:{self.seed}:{i}" for i in range(self.n)]

    def __len__(self) -> int:
        return self.n

    def image(self, i: int) -> np.ndarray:
        return render_face(self._geo[i])


def make_face(rng: np.random.Generator, size_range=(120, 200)) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic face: (uint8 RGB image (h, w, 3), its 68 points (68, 2) in pixels)."""
    g = face_geometry(rng, size_range)
    return render_face(g), g["points"].copy()
