"""The batched TTA predictor: every view of every image in one model call per chunk, streamed.

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

Streaming: :meth:`TTAPredictor.iter_members` / :meth:`TTAPredictor.iter_predict` yield
consecutive images in input order as soon as all their members (models x views) are back, so a
caller holds O(max_batch x members x K) numbers, never O(images x members x K). Decoding and the
view warps run in :class:`ViewSource`, in worker processes when ``workers > 0`` (a torch
``DataLoader`` prefetching while the model runs); the model call, the inverse and the merge stay
in the main process.

Uncertainty σ: a model with ``has_sigma = True`` and a method ``call_with_sigma(batch) ->
(points, sigma)`` (``sigma`` (B, K): isotropic σ per landmark in input-frame pixels, numpy or torch)
is called through that method, once per batch as ``__call__`` would be. Each member's σ is mapped to
original pixels by its fused record (:func:`invert_sigma`: times ``sqrt(|det A^-1|)``, or for a
projective ``Perspective`` view the local area of the inverse map at each point; flip pairs
swapped back like the points) and multiplied by the spec's ``sigma_scale``. When every model has
σ, chunks and results carry ``member_sigma`` (n, M, K) and the merged ``sigma`` (n, K) (see
:mod:`augkit.tta.merge`); otherwise they are None and nothing changes.

Unreadable images: left NaN (``ok`` False) by default. With ``fallback="grey"`` they are predicted
on a mid-grey (128) image of their size (read from the file header when it can be; else the median
header size of up to 64 other listed images; else the first model's input size) so a submission is
never short; ``Chunk.fallback`` marks them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from augkit import geometry
from augkit.compose import Compose, invert_points, matrix_singular, record_flips, record_matrix
from augkit.errors import InputError
from augkit.schemes import get_scheme
from augkit.workers import default_workers as _default_workers

from .merge import merge_with_sigma, spread
from .sources import FALLBACK_GREY, ViewSource, item_name, iter_views
from .views import TTASpec, get_spec

if TYPE_CHECKING:  # torch is imported only where a model needs it
    import torch

__all__ = ["TTAPredictor", "MemberPredictions", "TTAResult", "TorchCallable", "predict", "as_points",
           "as_sigma", "invert_sigma", "merge_members", "merge_chunk", "model_has_sigma", "Chunk", "ViewSource",
           "default_workers", "FALLBACK_GREY"]

TTA_MAX_WORKERS = 8          # decoding/warping workers by default: beyond that a GPU is rarely starved

#: workers of the TTA producer by default: :func:`augkit.workers.default_workers` capped at ``TTA_MAX_WORKERS``
default_workers = partial(_default_workers, cap=TTA_MAX_WORKERS)


@dataclass
class MemberPredictions:
    """Every member's prediction (models x views, model-major) in original pixels.

    Shape: ``points`` (N, M, K, 2), NaN for images that could not be read; ``ok`` (N,);
    ``sigma`` (N, M, K) each member's σ in original pixels (after ``sigma_scale``), or None when
    a model reports no σ.
    """

    names: list
    points: np.ndarray
    ok: np.ndarray
    errors: list = field(default_factory=list)   # (name, message) of unreadable images
    member_names: list = field(default_factory=list)
    fallback: np.ndarray | None = None           # (N,) predicted on the fallback image
    sigma: np.ndarray | None = None

    def merge(self, spec: TTASpec, n_models: int = 1, members=None) -> "TTAResult":
        """Merge (a subset of) the members by ``spec``; ``members`` indexes ``points`` axis 1."""
        sel = slice(None) if members is None else list(members)
        pts = self.points[:, sel]
        sig = None if self.sigma is None else self.sigma[:, sel]
        merged, spr, msig = merge_chunk(pts, sig, spec, n_models)
        return TTAResult(self.names, merged, spr, pts, self.ok, self.errors, msig, sig)


@dataclass
class TTAResult:
    """Merged TTA prediction. Shape: ``points`` (N, K, 2) and ``spread`` (N, K) in original pixels
    (NaN for unreadable images), ``members`` (N, M, K, 2), ``ok`` (N,). With σ models: ``sigma``
    (N, K) the merged σ (the merge-weighted mean of the members' σ) and ``member_sigma``
    (N, M, K), original pixels after ``sigma_scale``; else None."""

    names: list
    points: np.ndarray
    spread: np.ndarray
    members: np.ndarray
    ok: np.ndarray
    errors: list = field(default_factory=list)
    sigma: np.ndarray | None = None
    member_sigma: np.ndarray | None = None


@dataclass
class Chunk:
    """Consecutive images of the input, all members predicted.

    ``start``: position of the first image in the input. Shape: ``members`` (n, M, K, 2) float64
    (NaN rows for unreadable images without a fallback); ``points`` (n, K, 2) and ``spread`` (n, K)
    once merged (:meth:`TTAPredictor.iter_predict`); ``ok`` (n,) decoded; ``fallback`` (n,)
    predicted on the fallback image. ``errors``: (name, message) of this chunk's unreadable images.
    With σ models (else None): ``member_sigma`` (n, M, K) float64, each member's σ in original
    pixels after the spec's ``sigma_scale`` (NaN rows for unreadable images), and ``sigma`` (n, K)
    the merged σ once merged.
    """

    start: int
    names: list
    ok: np.ndarray
    fallback: np.ndarray
    members: np.ndarray | None
    errors: list
    points: np.ndarray | None = None
    spread: np.ndarray | None = None
    member_sigma: np.ndarray | None = None
    sigma: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)


def merge_chunk(pts: np.ndarray, sigma, spec: TTASpec,
                n_models: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(merged (n, K, 2), spread (n, K), merged σ (n, K) or None)`` of member predictions
    ``(n, M, K, 2)`` and member σ ``(n, M, K)`` (or None) by ``spec``.

    Raises:
        ValueError: the spec's merge needs σ (``sigma``, ``sigma+robust``) and ``sigma`` is None.
    """
    if sigma is None and spec.needs_sigma:
        raise InputError(f"{spec.source or 'spec ' + repr(spec.name)}: merge {spec.merge!r} needs the models' σ, "
                         "but the members carry none")
    w = spec.member_weights(n_models, pts.shape[2]) if spec.uses_weights else None
    merged, msig = merge_with_sigma(pts, sigma, w, spec.merge, spec.trim)
    return merged, spread(pts), msig


def merge_members(pts: np.ndarray, spec: TTASpec, n_models: int, sigma=None) -> tuple[np.ndarray, np.ndarray]:
    """``(merged (n, K, 2), spread (n, K))`` of member predictions ``(n, M, K, 2)`` by ``spec``;
    ``sigma`` (n, M, K) the members' σ, needed by the σ merges (see :func:`merge_chunk`)."""
    merged, spr, _ = merge_chunk(pts, sigma, spec, n_models)
    return merged, spr


def model_has_sigma(model) -> bool:
    """True when ``model`` reports σ: ``has_sigma`` is true and it has ``call_with_sigma``."""
    return bool(getattr(model, "has_sigma", False)) and callable(getattr(model, "call_with_sigma", None))


def invert_sigma(record: dict, sigma, scheme=None, points=None) -> np.ndarray:
    """Map isotropic σ from a record's output frame back to its input frame, as
    :func:`augkit.compose.invert_points` maps the points: times ``sqrt(|det J|)`` of the inverse
    map (for an affine ``M`` its 2x2 linear part, the same everywhere; for a projective one the
    Jacobian at each point, so ``points``, in the output frame, are needed) and, after an odd
    number of flips, the scheme's left/right permutation (none without a scheme, as for an
    ``unordered`` record). A new array is returned.

    Shape: ``sigma`` (..., K), ``points`` (..., K, 2) -> (..., K).
    """
    s = np.asarray(sigma, dtype=np.float64)
    m = record_matrix(record)
    if matrix_singular(m):
        raise InputError(f"the record's field 'M' is singular ({record['M']!r}): its σ cannot be mapped back")
    if geometry.is_affine(m):
        s = s / np.sqrt(abs(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]))
    else:
        if points is None:
            raise InputError("the record is projective (a Perspective step): mapping σ back needs the points")
        s = s * np.sqrt(geometry.jacobian_det(geometry.invert(m), np.asarray(points, dtype=np.float64)))
    if record_flips(record) % 2 and scheme is not None:
        scheme = get_scheme(scheme)
        if s.shape[-1] != scheme.n_points:
            raise InputError(f"σ has {s.shape[-1]} points, the scheme {scheme.name!r} has {scheme.n_points}")
        s = s[..., scheme.perm]
    return s


def as_points(out, n: int, n_points: int | None = None) -> np.ndarray:
    """A model's output as a NEW float64 (n, K, 2) array (the output itself is never touched)."""
    if hasattr(out, "detach"):  # torch tensor, without importing torch
        out = out.detach().float().cpu().numpy()
    arr = np.array(out, dtype=np.float64, copy=True)
    if arr.ndim == 2 and arr.shape[0] == n and arr.shape[1] % 2 == 0:
        arr = arr.reshape(n, -1, 2)
    if arr.ndim != 3 or arr.shape[0] != n or arr.shape[2] != 2:
        raise InputError(f"the model returned shape {arr.shape} for a batch of {n}; expected ({n}, K, 2)")
    if n_points is not None and arr.shape[1] != n_points:
        raise InputError(f"the model returned {arr.shape[1]} points, expected {n_points}")
    return arr


def as_sigma(out, n: int, n_points: int) -> np.ndarray:
    """A model's σ output as a NEW float64 (n, K) array; σ must be finite and non-negative."""
    if hasattr(out, "detach"):  # torch tensor, without importing torch
        out = out.detach().float().cpu().numpy()
    arr = np.array(out, dtype=np.float64, copy=True)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.shape != (n, n_points):
        raise InputError(f"the model returned σ of shape {arr.shape} for a batch of {n}; expected ({n}, {n_points})")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise InputError("the model returned a σ that is negative or not finite; σ must be finite and >= 0")
    return arr


# --------------------------------------------------------------------------------- predictor

class _Pending:
    """Members of one image still waiting for model calls."""

    __slots__ = ("members", "sigma", "left", "ok", "fallback", "error")

    def __init__(self, left: int, ok: bool, fallback: bool, error):
        self.members = self.sigma = None
        self.left, self.ok, self.fallback, self.error = left, ok, fallback, error


class _Batcher:
    """Builds one model's input batches; on CUDA in a page-locked buffer (``non_blocking`` copy)."""

    def __init__(self, model, max_batch: int):
        self.model, self.max_batch = model, max_batch
        dev = getattr(model, "device", None)
        self.pinned = getattr(dev, "type", None) == "cuda"
        self._buf: torch.Tensor | None = None

    def batch(self, images: list):
        if not self.pinned:
            return np.stack(images)
        import torch
        shape = (self.max_batch,) + images[0].shape
        if self._buf is None or tuple(self._buf.shape) != shape:
            self._buf = torch.empty(shape, dtype=torch.uint8).pin_memory()
        view = self._buf[: len(images)]
        np.stack(images, out=view.numpy())
        return view


class _MemberStream:
    """The state of one :meth:`TTAPredictor.iter_members` call: model-input images waiting in a
    buffer per model (and per view when views are not stacked), the images whose members are not all
    back yet, and the next image to release. Images leave in input order, as soon as all of theirs
    are back."""

    def __init__(self, predictor: "TTAPredictor", names: list):
        self.p = predictor
        self.names = names
        self.nv, self.nm = len(predictor.views), len(predictor.models)
        hint = {getattr(m, "n_points", None) for m in predictor.models}
        self.n_points = hint.pop() if len(hint) == 1 else None   # the models' K when they say (checked per call)
        self.pending: dict = {}
        self.buffers: dict = {}
        self.batchers = [_Batcher(m, predictor.max_batch) for m in predictor.models]
        self.next = 0

    def add(self, item: dict) -> None:
        """Queue every member of one image from :func:`iter_views`; call the model on full buffers."""
        i, views = item["index"], item["views"]
        self.pending[i] = _Pending(0 if views is None else self.nm * self.nv, item["ok"], item["fallback"],
                                   item["error"])
        for mi, (stack, recs) in enumerate(zip(views or [], item["records"] or [])):
            for v in range(self.nv):
                key = (mi,) if self.p.stacked else (mi, v)
                buf = self.buffers.setdefault(key, [])
                if buf and stack[v].shape != buf[0][0].shape:
                    raise InputError(f"view {self.p.views[v].name!r} of {self.names[i]} gives a {stack[v].shape} "
                                     f"input, other views/images {buf[0][0].shape}: views must keep the model-input "
                                     "size, and without a preprocessing pipeline all images must have one size")
                buf.append((stack[v], i, v, recs[v]))
                if len(buf) >= self.p.max_batch:
                    self.flush(key)

    def flush(self, key) -> None:
        """One model call on a buffer; each prediction goes back through its view's inverse."""
        buf = self.buffers.get(key)
        if not buf:
            return
        mi = key[0]
        batch = self.batchers[mi].batch([b[0] for b in buf])
        sig = None
        if self.p.has_sigma:
            raw, raw_sigma = self.p.models[mi].call_with_sigma(batch)
        else:
            raw = self.p.models[mi](batch)
        self.p.calls += 1
        pts = as_points(raw, len(buf), self.n_points)
        self.n_points = pts.shape[1]
        if self.p.has_sigma:
            sig = as_sigma(raw_sigma, len(buf), pts.shape[1]) * self.p.spec.sigma_scale
        for j, ((_, i, v, rec), pt) in enumerate(zip(buf, pts)):
            entry = self.pending[i]
            if entry.members is None:
                entry.members = np.full((self.nm * self.nv, pts.shape[1], 2), np.nan)
            entry.members[mi * self.nv + v] = invert_points(rec, pt, self.p.scheme)
            if sig is not None:
                if entry.sigma is None:
                    entry.sigma = np.full((self.nm * self.nv, pts.shape[1]), np.nan)
                entry.sigma[mi * self.nv + v] = invert_sigma(rec, sig[j], self.p.scheme, pt)
            entry.left -= 1
        self.buffers[key] = []

    def flush_all(self) -> None:
        for key in list(self.buffers):
            self.flush(key)

    def ready(self, final: bool) -> "Chunk | None":
        """The longest run of finished images from ``next`` as a Chunk (or None)."""
        i0 = i = self.next
        while i in self.pending and self.pending[i].left == 0:
            i += 1
        if i == i0 or (self.n_points is None and not final):
            return None
        n = i - i0
        members = np.full((n, self.nm * self.nv, self.n_points or 0, 2), np.nan)
        sigma = np.full(members.shape[:3], np.nan) if self.p.has_sigma else None
        ok, fb = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        errors = []
        for j in range(i0, i):
            e = self.pending.pop(j)
            if e.members is not None:
                members[j - i0] = e.members
            if sigma is not None and e.sigma is not None:
                sigma[j - i0] = e.sigma
            ok[j - i0], fb[j - i0] = e.ok, e.fallback
            if e.error:
                errors.append((self.names[j], e.error))
        self.next = i
        return Chunk(i0, self.names[i0:i], ok, fb, members, errors, member_sigma=sigma)


class TTAPredictor:
    """Batched, exactly inverted TTA for one model or an ensemble.

    A model with ``has_sigma`` and ``call_with_sigma`` reports σ (see the module doc); σ is
    collected when every model does. A spec whose merge needs σ with a model without it is
    refused here.

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
            raise InputError("at least one model is needed")
        for m in self.models:
            if not callable(m):
                raise TypeError(f"a model must be callable (uint8 NHWC batch -> (N, K, 2) points), got {type(m).__name__}")
        self.spec = get_spec(tta)
        self.has_sigma = all(model_has_sigma(m) for m in self.models)
        if self.spec.needs_sigma and not self.has_sigma:
            i, lacking = next((i, m) for i, m in enumerate(self.models) if not model_has_sigma(m))
            raise InputError(f"merge {self.spec.merge!r} needs the models' σ, but model "
                             f"{getattr(lacking, 'name', f'model{i}')!r} reports none (no has_sigma/call_with_sigma)")
        pres = preprocess if isinstance(preprocess, (list, tuple)) else [preprocess] * len(self.models)
        if len(pres) != len(self.models):
            raise InputError(f"{len(pres)} preprocessing pipelines for {len(self.models)} models")
        self.preprocess = []
        for m, p in zip(self.models, pres):
            p = p if p is not None else getattr(m, "preprocess", None)
            p = Compose([]) if p is None else p
            if not p.deterministic:
                raise InputError("the preprocessing pipeline must be deterministic (no random values)")
            self.preprocess.append(p)
        if scheme is None:
            scheme = getattr(self.models[0], "scheme", None)
        self.scheme = None if scheme is None else get_scheme(scheme)
        if self.scheme is None and any(v.flips for v in self.spec.views):
            raise InputError("the TTA views flip, but no landmark scheme is known to swap left/right points "
                             "back: pass scheme='ibug68' (or a scheme file)")
        # preprocessing + view fused per (model, view): one warp of the original image each
        self._fused = [[Compose([pre, view.pipeline], points_unordered=True, border_mode=pre.border_mode,
                                fill=pre.fill, interpolation=pre.interpolation, preshrink=pre.preshrink)
                        for view in self.spec.views] for pre in self.preprocess]
        if int(max_batch) < 1:
            raise InputError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = int(max_batch)
        self.stacked = bool(stacked)
        self.calls = 0

    @property
    def views(self) -> list:
        return self.spec.views

    @property
    def n_members(self) -> int:
        return len(self.models) * len(self.views)

    @property
    def member_names(self) -> list:
        names = [str(getattr(m, "name", f"model{i}")) for i, m in enumerate(self.models)]
        if len(self.models) == 1:
            return [v.name for v in self.views]
        return [f"{n}/{v.name}" for n in names for v in self.views]

    def source(self, images, fallback: str | None = None) -> ViewSource:
        """The producer of this predictor's model inputs for ``images`` (see :class:`ViewSource`)."""
        size = getattr(self.models[0], "input_size", None)
        return ViewSource(list(images), self._fused, fallback, size, [v.name for v in self.views])

    # ------------------------------------------------------------------ streaming
    def iter_members(self, images, names=None, *, workers: int = 0, fallback: str | None = None,
                     progress=None):
        """Yield :class:`Chunk` s (members only) of consecutive images, in input order.

        ``images``: a list of uint8 RGB arrays (H, W, 3) and/or image paths. Paths that cannot be
        read are reported in the chunk's ``errors`` (by name) and left NaN, or predicted on the
        fallback image (``fallback="grey"``). ``workers``: decode + warp in this many processes.
        ``progress``: optional callable(n_done) called after each image is queued.
        """
        items = list(images)
        names = [item_name(it, i) for i, it in enumerate(items)] if names is None else list(names)
        if len(names) != len(items):
            raise InputError(f"{len(names)} names for {len(items)} images")
        stream = _MemberStream(self, names)
        for item in iter_views(self.source(items, fallback), workers):
            stream.add(item)
            if progress:
                progress(1)
            chunk = stream.ready(final=False)
            if chunk is not None:
                yield chunk
        stream.flush_all()
        chunk = stream.ready(final=True)
        if chunk is not None:
            yield chunk

    def iter_predict(self, images, names=None, *, workers: int = 0, fallback: str | None = None,
                     progress=None, keep_members: bool = False):
        """Yield merged :class:`Chunk` s (``points``, ``spread``, and ``sigma`` with σ models) in input
        order; ``members`` and ``member_sigma`` are kept only when ``keep_members`` (else None, so the
        caller holds nothing per member)."""
        for chunk in self.iter_members(images, names, workers=workers, fallback=fallback, progress=progress):
            chunk.points, chunk.spread, chunk.sigma = merge_chunk(chunk.members, chunk.member_sigma, self.spec,
                                                                  len(self.models))
            if not keep_members:
                chunk.members = chunk.member_sigma = None
            yield chunk

    # ------------------------------------------------------------------ in memory
    def predict_members(self, images, names=None, progress=None, *, workers: int = 0,
                        fallback: str | None = None) -> MemberPredictions:
        """Every member's prediction in original pixels, unmerged, all in memory (small sets).

        See :meth:`iter_members`; unreadable images are NaN rows (``ok`` False) unless a fallback is asked.
        """
        items = list(images)
        chunks = list(self.iter_members(items, names, workers=workers, fallback=fallback, progress=progress))
        k = chunks[0].members.shape[2] if chunks else 0
        pts = np.concatenate([c.members for c in chunks]) if chunks else np.full((0, self.n_members, k, 2), np.nan)
        sigma = None
        if self.has_sigma:
            sigma = (np.concatenate([c.member_sigma for c in chunks]) if chunks
                     else np.full((0, self.n_members, k), np.nan))
        all_names = [n for c in chunks for n in c.names]
        ok = np.concatenate([c.ok for c in chunks]) if chunks else np.zeros(0, dtype=bool)
        fb = np.concatenate([c.fallback for c in chunks]) if chunks else np.zeros(0, dtype=bool)
        errors = [e for c in chunks for e in c.errors]
        return MemberPredictions(all_names, pts, ok, errors, self.member_names, fb, sigma)

    def predict(self, images, names=None, progress=None, **kwargs) -> TTAResult:
        """Merged prediction (original pixels) with the per-landmark spread; see ``predict_members``."""
        return self.predict_members(images, names, progress, **kwargs).merge(self.spec, len(self.models))

    __call__ = predict


def predict(model, images, tta="flip", **kwargs) -> TTAResult:
    """One-shot: ``TTAPredictor(model, tta, **kwargs).predict(images)``."""
    return TTAPredictor(model, tta, **kwargs).predict(images)


class TorchCallable:
    """Wrap a ``torch.nn.Module`` (float NCHW in, (N, K, 2) or (N, 2K) pixels out) as a TTA model.

    The uint8 NHWC batch goes through :class:`augkit.models.model_input.ModelInput` (the same model
    input as training and checkpoints): normalised by ``mean``/``std`` (statistics of [0, 1]
    images), on ``device``, under ``amp_dtype`` autocast (default none) and ``torch.inference_mode``.
    """

    def __init__(self, module, mean=None, std=None, device="cpu", preprocess=None, scheme=None, *,
                 amp_dtype=None, channels_last: bool = False):
        from augkit.models.model_input import IMAGENET_MEAN, IMAGENET_STD, ModelInput
        self.input = ModelInput(device, amp_dtype, channels_last, IMAGENET_MEAN if mean is None else mean,
                                IMAGENET_STD if std is None else std)
        self.device = self.input.device
        self.module = module.to(self.device).eval()
        self.preprocess, self.scheme = preprocess, scheme

    def __call__(self, batch):
        import torch
        with torch.inference_mode():
            out = self.input(self.module, batch)
            return out.reshape(out.shape[0], -1, 2).cpu().numpy()
