"""The batched TTA predictor: every view of every image in one model call per chunk.

The model is any callable ``model(batch) -> points`` where ``batch`` is a uint8 numpy array of
shape ``(B, H, W, 3)`` (RGB, NHWC: the model-input images, after preprocessing and the view) and
``points`` is ``(B, K, 2)`` (numpy array, torch tensor or anything ``np.asarray`` takes) in pixels
of that input frame. The output is copied, never modified. ``augkit.train`` checkpoints
(``LandmarkModel``) are such callables and also bring ``preprocess`` and ``scheme``; a plain
``torch.nn.Module`` can be wrapped with :class:`TorchCallable`.

For each image and view, the preprocessing (original -> model input) and the view's pipeline are
fused into ONE pipeline, so each view is one warp of the original image (one interpolation, not a
resample of the resampled input). Predictions go back through ``invert_points(record, ·, scheme)``
of that fused call (flip pairs swapped back) straight into original pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from augkit.compose import Compose, invert_points
from augkit.io import ImageReadError, read_image
from augkit.schemes import get_scheme

from .merge import merge, spread
from .views import TTASpec, get_spec

__all__ = ["TTAPredictor", "MemberPredictions", "TTAResult", "TorchCallable", "predict", "as_points"]


@dataclass
class MemberPredictions:
    """Every member's prediction (models x views, model-major) in original pixels.

    Shape: ``points`` (N, M, K, 2), NaN for images that could not be read; ``ok`` (N,).
    """

    names: list
    points: np.ndarray
    ok: np.ndarray
    errors: list = field(default_factory=list)   # (name, message) of unreadable images
    member_names: list = field(default_factory=list)

    def merge(self, spec: TTASpec, n_models: int = 1, members=None) -> "TTAResult":
        """Merge (a subset of) the members by ``spec``; ``members`` indexes ``points`` axis 1."""
        pts = self.points if members is None else self.points[:, list(members)]
        w = spec.member_weights(n_models, pts.shape[2]) if spec.merge == "mean" else None
        merged = merge(pts, w, spec.merge, spec.trim)
        return TTAResult(self.names, merged, spread(pts), pts, self.ok, self.errors)


@dataclass
class TTAResult:
    """Merged TTA prediction. Shape: ``points`` (N, K, 2) and ``spread`` (N, K) in original pixels
    (NaN for unreadable images), ``members`` (N, M, K, 2), ``ok`` (N,)."""

    names: list
    points: np.ndarray
    spread: np.ndarray
    members: np.ndarray
    ok: np.ndarray
    errors: list = field(default_factory=list)


def as_points(out, n: int, n_points: int | None = None) -> np.ndarray:
    """A model's output as a NEW float64 (n, K, 2) array (the output itself is never touched)."""
    if hasattr(out, "detach"):  # torch tensor, without importing torch
        out = out.detach().float().cpu().numpy()
    arr = np.array(out, dtype=np.float64, copy=True)
    if arr.ndim == 2 and arr.shape[0] == n and arr.shape[1] % 2 == 0:
        arr = arr.reshape(n, -1, 2)
    if arr.ndim != 3 or arr.shape[0] != n or arr.shape[2] != 2:
        raise ValueError(f"the model returned shape {arr.shape} for a batch of {n}; expected ({n}, K, 2)")
    if n_points is not None and arr.shape[1] != n_points:
        raise ValueError(f"the model returned {arr.shape[1]} points, expected {n_points}")
    return arr


def _name(item, i: int) -> str:
    return os.fspath(item) if isinstance(item, (str, os.PathLike)) else f"#{i}"


class TTAPredictor:
    """Batched, exactly inverted TTA for one model or an ensemble.

    Args:
        models: a callable (see the module doc) or a list of them (an ensemble: members are
            models x views, model-major).
        tta: a preset name (``none``, ``flip``, ``flip-rot``, ``flip-scale``, ``full``), a spec file
            path, a ``TTASpec`` or a list of ``View``.
        preprocess: deterministic ``augkit.Compose`` original image -> model input (one, or one per
            model); default: each model's ``.preprocess`` attribute, else none (images must then
            all have one size).
        scheme: landmark scheme for flip views; default: the first model's ``.scheme``.
        max_batch: most images per model call.
        stacked: True: all views of all images of a chunk in one call. False: one view per call
            (the way ttach does it; for comparison).
    """

    def __init__(self, models, tta="flip", *, preprocess=None, scheme=None, max_batch: int = 64,
                 stacked: bool = True):
        self.models = list(models) if isinstance(models, (list, tuple)) else [models]
        if not self.models:
            raise ValueError("at least one model is needed")
        for m in self.models:
            if not callable(m):
                raise TypeError(f"a model must be callable (uint8 NHWC batch -> (N, K, 2) points), got {type(m).__name__}")
        self.spec = get_spec(tta)
        pres = preprocess if isinstance(preprocess, (list, tuple)) else [preprocess] * len(self.models)
        if len(pres) != len(self.models):
            raise ValueError(f"{len(pres)} preprocessing pipelines for {len(self.models)} models")
        self.preprocess = []
        for m, p in zip(self.models, pres):
            p = p if p is not None else getattr(m, "preprocess", None)
            p = Compose([]) if p is None else p
            if not p.deterministic:
                raise ValueError("the preprocessing pipeline must be deterministic (no random values)")
            self.preprocess.append(p)
        if scheme is None:
            scheme = getattr(self.models[0], "scheme", None)
        self.scheme = None if scheme is None else get_scheme(scheme)
        if self.scheme is None and any(v.flips for v in self.spec.views):
            raise ValueError("the TTA views flip, but no landmark scheme is known to swap left/right points "
                             "back: pass scheme='ibug68' (or a scheme file)")
        # preprocessing + view fused per (model, view): one warp of the original image each
        self._fused = [[Compose([pre, view.pipeline], points_unordered=True, border_mode=pre.border_mode,
                                fill=pre.fill, interpolation=pre.interpolation, preshrink=pre.preshrink)
                        for view in self.spec.views] for pre in self.preprocess]
        if int(max_batch) < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = int(max_batch)
        self.stacked = bool(stacked)
        self.calls = 0

    @property
    def views(self) -> list:
        return self.spec.views

    @property
    def member_names(self) -> list:
        names = [str(getattr(m, "name", f"model{i}")) for i, m in enumerate(self.models)]
        if len(self.models) == 1:
            return [v.name for v in self.views]
        return [f"{n}/{v.name}" for n in names for v in self.views]

    # ------------------------------------------------------------------ prediction
    def predict_members(self, images, names=None, progress=None) -> MemberPredictions:
        """Every member's prediction in original pixels, unmerged.

        ``images``: a list of uint8 RGB arrays (H, W, 3) and/or image paths. Paths that cannot be
        read are reported in ``errors`` (by name) and left NaN; the others go on.
        ``progress``: optional callable(n_done) called after each image is queued.
        """
        items = list(images)
        n = len(items)
        names = [_name(it, i) for i, it in enumerate(items)] if names is None else list(names)
        nv, nm = len(self.views), len(self.models)
        state = {"out": None}
        ok = np.zeros(n, dtype=bool)
        errors = []
        buffers: dict = {}

        def flush(key):
            buf = buffers.get(key)
            if not buf:
                return
            mi = key[0]
            batch = np.stack([b[0] for b in buf])
            raw = self.models[mi](batch)
            self.calls += 1
            k0 = None if state["out"] is None else state["out"].shape[2]
            pts = as_points(raw, len(buf), k0)
            if state["out"] is None:
                state["out"] = np.full((n, nm * nv, pts.shape[1], 2), np.nan)
            out = state["out"]
            for (_, i, v, rec), p in zip(buf, pts):
                out[i, mi * nv + v] = invert_points(rec, p, self.scheme)
            buffers[key] = []

        for i, item in enumerate(items):
            if isinstance(item, (str, os.PathLike)):
                try:
                    image = read_image(item)
                except ImageReadError as e:
                    errors.append((names[i], str(e)))
                    if progress:
                        progress(1)
                    continue
            else:
                image = item
            for mi, fused in enumerate(self._fused):
                for v, (view, pipe) in enumerate(zip(self.views, fused)):
                    rv = pipe(image)
                    key = (mi,) if self.stacked else (mi, v)
                    buf = buffers.setdefault(key, [])
                    if buf and rv.image.shape != buf[0][0].shape:
                        raise ValueError(f"view {view.name!r} gives a {rv.image.shape} input, other views/images "
                                         f"{buf[0][0].shape}: views must keep the model-input size, and without a "
                                         "preprocessing pipeline all images must have one size")
                    buf.append((rv.image, i, v, rv.record))
                    if len(buf) >= self.max_batch:
                        flush(key)
            ok[i] = True
            if progress:
                progress(1)
        for key in list(buffers):
            flush(key)
        out = state["out"]
        if out is None:
            out = np.full((n, nm * nv, 0, 2), np.nan)
        return MemberPredictions(names, out, ok, errors, self.member_names)

    def predict(self, images, names=None, progress=None) -> TTAResult:
        """Merged prediction (original pixels) with the per-landmark spread; see ``predict_members``."""
        return self.predict_members(images, names, progress).merge(self.spec, len(self.models))

    __call__ = predict


def predict(model, images, tta="flip", **kwargs) -> TTAResult:
    """One-shot: ``TTAPredictor(model, tta, **kwargs).predict(images)``."""
    return TTAPredictor(model, tta, **kwargs).predict(images)


class TorchCallable:
    """Wrap a ``torch.nn.Module`` (float NCHW in, (N, K, 2) or (N, 2K) pixels out) as a TTA model.

    The uint8 NHWC batch is scaled to [0, 1], normalised by ``mean``/``std`` and run under
    ``torch.inference_mode`` on ``device``.
    """

    def __init__(self, module, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), device="cpu",
                 preprocess=None, scheme=None):
        import torch
        self.module = module.to(device).eval()
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.preprocess, self.scheme = preprocess, scheme

    def __call__(self, batch):
        import torch
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            t = t.permute(0, 3, 1, 2).float().div_(255.0).sub_(self.mean).div_(self.std)
            out = self.module(t)
            return out.reshape(out.shape[0], -1, 2).float().cpu().numpy()
