"""The exported TTA with numpy alone: views, exact inverses and merge from the export's JSON.

A reference for any runtime that runs an ``augkit export`` (:mod:`augkit.tta.export`): it reads the
JSON description and nothing else. Its own code needs numpy only (no torch, no OpenCV calls; it
imports augkit for :mod:`augkit.errors`' error class, and ``import augkit`` loads OpenCV), so it
can be ported line by line, or copied beside a deployment with that one import replaced. The model is a
callable ``forward(batch)`` taking uint8 ``(B, H, W, 3)`` model-input images and returning
``(B, K, 2)`` input-frame points, or ``(points, sigma)`` with ``sigma`` ``(B, K)`` (e.g. an ONNX
Runtime session's ``run``).

For an image of ``w x h`` pixels:

1. ``P = preprocess_matrix(desc, w, h)`` (3x3, original -> model input);
2. per view ``v``: ``M = V_v @ P`` and the model input of that view is ONE warp of the original by
   ``M`` (``warp(image, M, (W, H))``);
3. the model's points ``p`` of view ``v`` go back by ``M^-1`` after ``p[perm_v]``; its σ is
   ``σ[perm_v] * sigma_scale / sqrt(|det M|)`` (a projective view, whose ``matrix`` has three rows:
   points divide by the last row, σ scales by the local area of ``M^-1`` at each point);
4. the members are merged by the description's method and weights (:func:`merge`).

``warp`` defaults to :func:`warp_bilinear` (written here by hand: bilinear, constant border), which
is close to but not bit-identical with OpenCV's fixed-point ``warpAffine`` and has no pre-shrink;
for the exact pixels augkit feeds its models, pass ``augkit.functional.warp`` (see
:func:`predict`). Merges: ``mean`` (static weights per view and landmark), ``median``,
``trimmed``, ``sigma`` (inverse variance), ``robust`` and ``sigma+robust`` (iteratively reweighted,
Cauchy), the same arithmetic as :mod:`augkit.tta.merge` (the tests hold them equal).
"""

from __future__ import annotations

import json
import math

import numpy as np

from augkit.errors import InputError

__all__ = ["invert_points", "invert_sigma", "merge", "predict", "preprocess_matrix", "read_description",
           "view_matrices", "warp_bilinear"]

FORMAT = "augkit-onnx-export"


def read_description(path) -> dict:
    """The JSON written by ``augkit export`` beside the ONNX file.

    Raises:
        InputError: the file is missing, unreadable, not JSON, or not an export's description.
    """
    try:
        with open(path, encoding="utf-8") as f:
            desc = json.load(f)
    except OSError as e:
        raise InputError(f"{path}: cannot read the export's description ({e.strerror})") from None
    except ValueError as e:
        raise InputError(f"{path}: not JSON ({e})") from None
    if not isinstance(desc, dict) or desc.get("format") != FORMAT:
        raise InputError(f"{path}: not the description of an augkit export")
    for field in ("preprocessing", "tta", "model", "input"):
        if not isinstance(desc.get(field), dict):
            raise InputError(f"{path}: the description has no field {field!r} (expected the JSON augkit export writes)")
    return desc


def _resize(src_w: float, src_h: float, dst_w: float, dst_h: float) -> np.ndarray:
    """A ``src`` frame onto a ``dst`` frame with pixel edges on pixel edges (pixel-centre coordinates)."""
    sx, sy = dst_w / src_w, dst_h / src_h
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def preprocess_matrix(desc: dict, width: int, height: int) -> np.ndarray:
    """The 3x3 matrix original (``width x height``) -> model input, for ``crop`` and ``letterbox``.

    ``crop``: scale so the short side is the input size (output sides rounded half to even, as
    Python's ``round``), then the centre window (offsets floored). ``letterbox``: scale to fit,
    pad centred (offsets floored). A ``custom`` preprocessing is augkit's pipeline only: compute
    its matrix with ``augkit.Compose.from_dict(desc["preprocessing"]["pipeline"]).plan((w, h))``.
    """
    pre = desc["preprocessing"]
    out_w, out_h = (int(v) for v in pre["size"])
    if pre["mode"] == "crop":
        s = out_w / min(width, height)
        rw, rh = max(1, round(width * s)), max(1, round(height * s))
        m = _resize(width, height, rw, rh)
        m[0, 2] -= (rw - out_w) // 2
        m[1, 2] -= (rh - out_h) // 2
        return m
    if pre["mode"] == "letterbox":
        s = min(out_w / width, out_h / height)
        rw, rh = max(1, round(width * s)), max(1, round(height * s))
        m = _resize(width, height, rw, rh)
        m[0, 2] += (out_w - rw) // 2
        m[1, 2] += (out_h - rh) // 2
        return m
    raise InputError(f"preprocessing mode {pre['mode']!r}: only crop and letterbox have a formula here")


def view_matrices(desc: dict, width: int, height: int) -> list:
    """Per view ``(M, perm)``: the 3x3 fused matrix original -> view input and the landmark
    permutation of its inverse (the identity unless the view mirrors). A view's ``matrix`` has two
    rows (affine) or three (projective)."""
    p = preprocess_matrix(desc, width, height)
    out = []
    for v in desc["tta"]["views"]:
        mat = np.asarray(v["matrix"], dtype=np.float64)
        vm = np.eye(3)
        vm[:mat.shape[0]] = mat
        out.append((vm @ p, np.asarray(v["perm"], dtype=np.int64)))
    return out


def _projective(m: np.ndarray) -> bool:
    return not (m[2, 0] == 0.0 and m[2, 1] == 0.0 and m[2, 2] == 1.0)


def warp_bilinear(image: np.ndarray, m: np.ndarray, size, fill: float = 0.0) -> np.ndarray:
    """Warp ``image`` (H, W, C) uint8 by the 3x3 ``m`` (source -> output; affine or projective)
    into ``size = (w, h)``: each output pixel samples the source bilinearly at ``m^-1 (x, y)``
    (divided by its last row when projective); neighbours outside the source take ``fill``."""
    w, h = int(size[0]), int(size[1])
    inv = np.linalg.inv(m)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    if _projective(m):
        sw = inv[2, 0] * xs + inv[2, 1] * ys + inv[2, 2]
        sx, sy = sx / sw, sy / sw
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    src = image.astype(np.float64)
    ih, iw = src.shape[:2]

    def at(yy, xx):
        inside = (xx >= 0) & (xx < iw) & (yy >= 0) & (yy < ih)
        v = src[np.clip(yy, 0, ih - 1), np.clip(xx, 0, iw - 1)]
        return np.where(inside[..., None], v, float(fill))

    top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
    bottom = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
    return np.clip(np.rint(top * (1 - fy) + bottom * fy), 0, 255).astype(np.uint8)


def invert_points(points: np.ndarray, m: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Model-input points of one view ``(..., K, 2)`` -> original pixels: ``M^-1`` after ``p[perm]``
    (divided by the last row of the result when ``M`` is projective)."""
    p = np.asarray(points, dtype=np.float64)[..., perm, :]
    inv = np.linalg.inv(m)
    if _projective(m):
        q = p @ inv[:, :2].T + inv[:, 2]
        return q[..., :2] / q[..., 2:]
    return p @ inv[:2, :2].T + inv[:2, 2]


def invert_sigma(sigma: np.ndarray, m: np.ndarray, perm: np.ndarray, scale: float = 1.0,
                 points: np.ndarray | None = None) -> np.ndarray:
    """σ of one view ``(..., K)`` -> original pixels: ``σ[perm] * scale / sqrt(|det M|)``; for a
    projective ``M``, times ``sqrt(|det J|)`` of ``M^-1`` at each model-input point (``points``
    ``(..., K, 2)``, before ``perm``: ``|det M^-1| / w^3``, ``w`` its last row at the point)."""
    s = np.asarray(sigma, dtype=np.float64)
    if _projective(m):
        if points is None:
            raise InputError("a projective view maps σ back by its local area: pass the view's points")
        inv = np.linalg.inv(m)
        p = np.asarray(points, dtype=np.float64)
        wq = p @ inv[2, :2] + inv[2, 2]
        s = s * np.sqrt(abs(np.linalg.det(inv)) / np.abs(wq) ** 3)
        return s[..., perm] * scale
    det = abs(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0])
    return s[..., perm] * scale / math.sqrt(det)


def _robust_weights(p, base, s2, iters, c0, floor):
    """Iteratively reweighted (Cauchy) member weights ``(N, M, K)`` starting from ``base``."""
    w = base / base.sum(axis=1, keepdims=True)
    if p.shape[1] < 2:
        return w
    est = np.median(p, axis=1)
    for _ in range(int(iters)):
        d = np.sqrt(((p - est[:, None]) ** 2).sum(axis=-1))
        c = np.maximum(1.4826 * np.median(d, axis=1, keepdims=True), floor)
        e = d / (c if s2 is None else np.sqrt(c ** 2 + s2))
        whole = np.median(e, axis=2, keepdims=True)
        w = base / (1.0 + 0.5 * (e ** 2 + whole ** 2) / c0 ** 2)
        w = w / w.sum(axis=1, keepdims=True)
        est = np.einsum("nmkc,nmk->nkc", p, w)
    return w


def merge(desc: dict, members: np.ndarray, sigma: np.ndarray | None = None):
    """``(merged (N, K, 2), merged σ (N, K) or None)`` of the members ``(N, V, K, 2)`` (original
    pixels, views in the description's order) and their σ ``(N, V, K)`` (after :func:`invert_sigma`)."""
    t = desc["tta"]
    method = t["merge"]
    p = np.asarray(members, dtype=np.float64)
    s = None if sigma is None else np.asarray(sigma, dtype=np.float64)
    n, m, _, _ = p.shape
    if method == "median":
        return np.median(p, axis=1), None if s is None else s.mean(axis=1)
    if method == "trimmed":
        cut = int(float(t["trim"]) * m)
        kept = np.sort(p, axis=1)[:, cut:m - cut]
        return kept.mean(axis=1), None if s is None else s.mean(axis=1)
    w = np.asarray(t["weights"], dtype=np.float64)          # (V, K), each landmark's column sums to one
    w = w / w.sum(axis=0, keepdims=True)
    if method == "mean":
        return np.einsum("nmkc,mk->nkc", p, w), None if s is None else np.einsum("nmk,mk->nk", s, w)
    r = t.get("robust", {})
    iters, c0, floor = r.get("iters", 10), r.get("c", 2.385), r.get("floor", 0.1)
    base = np.broadcast_to(w, (n,) + w.shape)
    if method in ("sigma", "sigma+robust"):
        if s is None:
            raise InputError(f"merge {method!r} needs the model's sigma")
        inv = base / np.maximum(s, t.get("sigma_min", 1e-6)) ** 2
        base = inv / inv.sum(axis=1, keepdims=True)
        eff = base if method == "sigma" else _robust_weights(p, base, 2.0 * s ** 2, iters, c0, floor)
    elif method == "robust":
        eff = _robust_weights(p, base, None, iters, c0, floor)
    else:
        raise InputError(f"unknown merge {method!r}")
    return np.einsum("nmkc,nmk->nkc", p, eff), None if s is None else (eff * s).sum(axis=1)


def predict(desc: dict, images, forward, warp=None, batch_size: int = 64, keep_members: bool = False) -> dict:
    """TTA prediction of original images with numpy alone, streamed.

    Args:
        desc: the export's description (:func:`read_description`).
        images: an iterable of uint8 RGB ``(h, w, 3)`` arrays, any sizes (a generator reading files
            one by one works: at most one batch of model inputs and the views of the images in it
            are held; each image is merged as soon as its last view comes back).
        forward: ``forward(batch)`` -> points ``(B, K, 2)`` or ``(points, sigma (B, K))``, input-frame pixels.
        warp: ``warp(image, M (3x3), (w, h))`` -> the model input. Default :func:`warp_bilinear`
            with the description's fill, for the description's default warp (bilinear, constant
            border; other settings need a ``warp``). For augkit's own pixels (OpenCV, its
            pre-shrink) pass ``augkit.functional.warp`` with the description's ``preprocessing.warp``
            settings; with the defaults ``lambda im, m, size: augkit.functional.warp(im, m, size)``
            gives the same points as ``augkit predict``.
        batch_size: most model-input images per ``forward`` call.
        keep_members: also return every view's points (and σ) in original pixels: ``(N, V, K, 2)``,
            V times the result, so off by default.

    Returns:
        ``{"points": (N, K, 2), "spread": (N, K), "sigma": (N, K) or None}`` in original pixels
        (``spread``: the members' standard deviation around their plain mean, as a distance), with
        ``"members"`` ``(N, V, K, 2)`` and ``"member_sigma"`` ``(N, V, K)`` or None when
        ``keep_members``.
    """
    settings = desc["preprocessing"]["warp"]
    fill = settings.get("fill", 0)
    fill = float(fill[0] if isinstance(fill, list) else fill)
    if warp is None:
        if settings.get("interpolation", "linear") != "linear" or settings.get("border_mode", "constant") != "constant":
            raise InputError(f"the export warps with interpolation {settings.get('interpolation')!r} and border "
                             f"{settings.get('border_mode')!r}; warp_bilinear does bilinear with a constant border "
                             "only: pass a warp")

        def bilinear(im, m, size):
            return warp_bilinear(im, m, size, fill)
        warp = bilinear
    h, w = (int(v) for v in desc["input"]["shape"][1:3])
    scale = float(desc["tta"].get("sigma_scale", 1.0))
    nv, k = len(desc["tta"]["views"]), int(desc["model"]["n_points"])
    has_sigma = bool(desc["model"]["has_sigma"])
    pending: dict = {}              # image index -> [members (V, K, 2), σ (V, K) or None, views left]
    done: dict = {}                 # image index -> (points, spread, σ, members, member σ)
    jobs: list = []                 # (image index, view index, M, perm, model input)

    def finish(i: int) -> None:
        members, msig, _ = pending.pop(i)
        pts, sig = merge(desc, members[None], None if msig is None else msig[None])
        d = members - members.mean(axis=0, keepdims=True)
        spread = np.sqrt((d ** 2).sum(axis=-1).mean(axis=0))
        done[i] = (pts[0], spread, None if sig is None else sig[0], members if keep_members else None,
                   msig if keep_members else None)

    def flush() -> None:
        out = forward(np.stack([j[4] for j in jobs]))
        if isinstance(out, (tuple, list)):   # (points, sigma), or (points,) as a session's run gives it
            pts, sig = out[0], (out[1] if len(out) > 1 else None)
        else:
            pts, sig = out, None
        for (i, v, m, perm, _), p_j, s_j in zip(jobs, np.asarray(pts), [None] * len(jobs) if sig is None else sig):
            entry = pending[i]
            entry[0][v] = invert_points(p_j, m, perm)
            if entry[1] is not None and s_j is not None:
                entry[1][v] = invert_sigma(s_j, m, perm, scale, p_j)
            entry[2] -= 1
            if entry[2] == 0:
                finish(i)
        jobs.clear()

    n = 0
    for i, image in enumerate(images):
        n = i + 1
        pending[i] = [np.full((nv, k, 2), np.nan), np.full((nv, k), np.nan) if has_sigma else None, nv]
        for v, (m, perm) in enumerate(view_matrices(desc, image.shape[1], image.shape[0])):
            jobs.append((i, v, m, perm, warp(image, m, (w, h))))
            if len(jobs) == batch_size:
                flush()
    if jobs:
        flush()
    rows = [done[i] for i in range(n)]
    out = {"points": np.stack([r[0] for r in rows]) if rows else np.zeros((0, k, 2)),
           "spread": np.stack([r[1] for r in rows]) if rows else np.zeros((0, k)),
           "sigma": np.stack([r[2] for r in rows]) if rows and has_sigma else None}
    if keep_members:
        out["members"] = np.stack([r[3] for r in rows]) if rows else np.zeros((0, nv, k, 2))
        out["member_sigma"] = np.stack([r[4] for r in rows]) if rows and has_sigma else None
    return out
