"""Evaluation of TTA settings side by side, sharing the forwards of views that settings have in
common, and a picture of the worst predictions.

:class:`EvalAccumulator` computes one setting's metrics chunk by chunk in bounded memory: running
sums for MSE, NME and the failure rate, a bounded heap of the worst images, and bounded uniform
samples (reservoirs) of (spread, error) pairs for the Spearman correlations — exact whenever the
data fits in the sample. :func:`evaluate_settings` is one ``add`` per setting. When the models give a
per-landmark sigma, each setting also gets the calibration of that sigma against the real errors
(:class:`augkit.calibration.CalibrationAccumulator`) and :func:`calibration_png` draws it.

**The streaming evaluation** behind ``augkit evaluate``: :func:`evaluate_tta` and its report.

One pass over the labelled images predicts the union of the settings' views (a view shared by
settings is predicted once); each chunk is merged per setting and added to that setting's
:class:`~augkit.tta.evaluate.EvalAccumulator`, then dropped. Next to the settings, a mean-shape
baseline row: the training mean shape the checkpoint carries (mapped through its preprocessing to
each image), else the mean of the labels. :func:`report_lines` gives the printed table.

When the models give a per-landmark sigma (the chunks carry ``member_sigma``), each setting's
metrics also hold ``calibration`` (coverage at 1 and 2 sigma against the Gaussian's promise, the
Spearman correlations of error and sigma, the ML scale factor of sigma; see
:mod:`augkit.calibration`), the printed report has a calibration table and ``calibration.png`` is
drawn next to the worst-cases picture. Models without sigma: none of these.
"""

from __future__ import annotations

import heapq
import json
import math
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from augkit import metrics
from augkit.calibration import CalibrationAccumulator, Reservoir
from augkit.errors import InputError

from . import inputs as ins
from .inputs import RunError
from .predictor import TTAPredictor, merge_chunk
from .runners import Compute
from .views import TTASpec, View, get_spec

__all__ = ["add_settings_chunk", "benchmark_table", "calibration_png", "calibration_table", "EvalAccumulator",
           "EvalReport", "evaluate_settings", "evaluate_tta", "format_table", "MeanShapeBaseline", "part_table",
           "report_lines", "SettingResult", "spearman_spread_error", "union_predict", "union_views"]


@dataclass
class SettingResult:
    """One setting's merged prediction and metrics (original pixels)."""

    label: str
    spec: TTASpec
    points: np.ndarray      # (N, K, 2)
    spread: np.ndarray      # (N, K)
    metrics: dict           # EvalAccumulator.result() keys plus members
    sigma: np.ndarray | None = None     # (N, K) the merged model sigma, None without sigma models


def union_views(specs, n_models: int):
    """The union of the specs' views (a view shared by settings is predicted once) and, per spec,
    its member indices into the union's members (model-major: ``model * U + view``)."""
    keys: dict[str, int] = {}
    union: list[View] = []
    view_idx: list[list[int]] = []
    for spec in specs:
        idx = []
        for v in spec.views:
            key = v.key()
            if key not in keys:
                keys[key] = len(union)
                union.append(v)
            idx.append(keys[key])
        view_idx.append(idx)
    u = len(union)
    return union, [[mi * u + j for mi in range(n_models) for j in idx] for idx in view_idx]


def union_predict(models, specs, images, *, preprocess=None, scheme=None, max_batch=64, progress=None):
    """Predict the union of the views of several specs in one pass.

    Returns ``(MemberPredictions over the union, [member indices of each spec])`` — index lists
    are model-major (``model * U + view``) so ``MemberPredictions.merge(spec, n_models, idx)`` works.
    """
    models = list(models) if isinstance(models, (list, tuple)) else [models]
    union, member_idx = union_views(specs, len(models))
    pred = TTAPredictor(models, TTASpec(union, name="union"), preprocess=preprocess, scheme=scheme,
                        max_batch=max_batch)
    members = pred.predict_members(images, progress=progress)
    return members, member_idx, pred


def spearman_spread_error(spread, pred, truth, scheme=None) -> tuple[float, float]:
    """Spearman correlation between the spread and the real error: per point (all points of all
    images pooled) and per image (mean spread vs NME). NaN when the spread is constant."""
    from scipy.stats import spearmanr
    err = np.linalg.norm(np.asarray(pred) - np.asarray(truth), axis=-1)
    ok = np.isfinite(err) & np.isfinite(spread)
    s, e = spread[ok], err[ok]
    rho_p = float(spearmanr(s, e).statistic) if s.size > 2 and np.ptp(s) > 0 else float("nan")
    img_ok = np.isfinite(err).all(axis=1)
    ms = np.asarray(spread)[img_ok].mean(axis=1)
    nme = metrics.per_image_nme(np.asarray(pred)[img_ok], np.asarray(truth)[img_ok], scheme)
    rho_i = float(spearmanr(ms, nme).statistic) if ms.size > 2 and np.ptp(ms) > 0 else float("nan")
    return rho_p, rho_i


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two samples; NaN for fewer than 3 values or a constant ``a``."""
    from scipy.stats import spearmanr
    return float(spearmanr(a, b).statistic) if a.size > 2 and np.ptp(a) > 0 else float("nan")


class EvalAccumulator:
    """One setting's metrics (original pixels), accumulated chunk by chunk in bounded memory.

    ``result()`` gives what ``metrics.summary`` gives on all the readable images (``mse``, ``nme``,
    ``fr``), plus ``rho_point`` and ``rho_image`` (as :func:`spearman_spread_error`, on uniform
    samples of at most ``spearman_sample`` points and images: identical when everything fits),
    ``worst`` (``[(index, nme), ...]``, the ``n_worst`` highest NME first), ``n_images`` (evaluated)
    and ``n_unreadable``. Memory: two samples of at most ``spearman_sample`` x 2 float64 and the heap.

    Args:
        n_points: K, points per image in the labels.
        scheme: landmark scheme for the NME normaliser (``None``: bounding-box diagonal).
        n_worst: how many of the worst images to keep.
        spearman_sample: most (spread, error) pairs kept for each Spearman correlation (and for
            those of the calibration).
        seed: seed of the sampling.
        threshold: NME above which an image fails (``fr``).

    With ``sigma`` given to :meth:`add` (the models' per-landmark sigma, merged), ``result()`` also
    has ``calibration``: :meth:`augkit.calibration.CalibrationAccumulator.result` of the readable
    images (coverage at 1 and 2 sigma next to the Gaussian's promise, the Spearman correlations of
    error and sigma per image and per point, the ML scale factor, the reliability bins and the
    coverage curve). Without sigma there is no ``calibration`` key.

    The public benchmarks' conventions (:func:`augkit.metrics.benchmark`): when the scheme names
    ``pupils`` or ``box_norm`` (wflw98, cofw29, aflw19), or :meth:`add` is given the labels' boxes,
    box sizes or attribute flags, ``result()`` also has ``benchmark``: ``nme_norm`` (inter-ocular),
    ``nme_pupils``, ``nme_box`` (those that apply), ``primary`` (the benchmark's own NME), ``fr``
    and ``auc`` of it at ``bench_threshold`` (0.10: WFLW's FR@0.1 and AUC@0.1), ``n``, and with
    attributes ``subsets`` (per attribute: ``nme``, ``fr``, ``auc``, ``n`` over the faces flagged).
    """

    def __init__(self, n_points: int, scheme=None, n_worst: int = 8, spearman_sample: int = 200_000,
                 seed: int = 0, threshold: float = 0.08, bench_threshold: float = 0.10):
        if spearman_sample < 3:
            raise InputError(f"spearman_sample must be at least 3, got {spearman_sample}")
        self.n_points, self.scheme, self.n_worst, self.threshold = int(n_points), scheme, int(n_worst), threshold
        self._sample, self._seed = int(spearman_sample), int(seed)
        self.calibration: CalibrationAccumulator | None = None    # made by the first add with a sigma
        self._points = Reservoir(int(spearman_sample), seed)
        self._images = Reservoir(int(spearman_sample), seed + 1)
        self._heap: list = []                  # (nme, -index): the smallest on top
        self.n_offered = self.n_images = 0
        self._sq_sum, self._sq_n = 0.0, 0
        self._nme_sum, self._n_fail = 0.0, 0
        # per landmark (K floats each): squared-error sum and count, normalised-error sum and count
        self._pt_sq, self._pt_n = np.zeros(self.n_points), np.zeros(self.n_points)
        self._pt_ne, self._pt_ne_n = np.zeros(self.n_points), np.zeros(self.n_points)
        # metrics.benchmark's means times the images they cover (per NME kind, fr, auc), and so per
        # attribute subset
        self.bench_threshold = float(bench_threshold)
        self._bench: dict = {}
        self._bench_primary = ""
        self._bench_n = 0
        self._subsets: dict = {}

    def add(self, pred, spread, truth, index, sigma=None, boxes=None, sizes=None, attributes=None) -> None:
        """Add one chunk: ``pred`` (B, K, 2) merged points (an all-NaN row is an unreadable image),
        ``spread`` (B, K), ``truth`` (B, K, 2) (NaN points are left out), ``index`` (B,) the images'
        positions in the full list (reported in ``worst``), ``sigma`` (B, K) the models' merged
        sigma in original pixels (None: models without sigma); the labels' ``boxes`` (B, 4),
        ``sizes`` (B,) and ``attributes`` (name -> (B,) flags) where the dataset has them."""
        p, s, t, idx = self._check(pred, spread, truth, index)
        self.n_offered += len(p)
        ok = ~np.isnan(p).all(axis=(1, 2))
        p, s, t, idx = p[ok], s[ok], t[ok], idx[ok]
        boxes, sizes, attributes = _label_extras(len(ok), boxes, sizes, attributes, ok)
        if sigma is not None:
            sg = np.asarray(sigma, dtype=np.float64)
            if sg.shape != ok.shape + (self.n_points,):
                raise InputError(f"sigma must be (images, points) = ({len(ok)}, {self.n_points}), got {sg.shape}")
            if self.calibration is None:
                self.calibration = CalibrationAccumulator(self._sample, self._seed + 2)
            if len(p):
                self.calibration.add(p, t, sg[ok])
        if not len(p):
            return
        self.n_images += len(p)
        d2 = (p - t) ** 2
        fin = np.isfinite(d2)
        self._sq_sum += float(d2[fin].sum())
        self._sq_n += int(fin.sum())
        err = np.linalg.norm(p - t, axis=-1)        # (B, K), once: NME and the Spearman samples
        norm = np.maximum(metrics.normaliser(t, self.scheme), 1e-9)
        e = np.nanmean(err, axis=1) / norm   # per_image_nme
        self._pt_sq += np.where(fin, d2, 0).sum(axis=(0, 2))
        self._pt_n += fin.sum(axis=(0, 2))
        ne = err / norm[:, None]
        self._pt_ne += np.nansum(ne, axis=0)
        self._pt_ne_n += np.isfinite(ne).sum(axis=0)
        self._nme_sum += float(e.sum())
        self._n_fail += int((e > self.threshold).sum())
        both = np.isfinite(err) & np.isfinite(s)
        self._points.add(np.stack([s[both], err[both]], axis=1))
        img_ok = np.isfinite(err).all(axis=1)
        self._images.add(np.stack([s[img_ok].mean(axis=1), e[img_ok]], axis=1))
        self._keep_worst(e, idx)
        pupils = getattr(self.scheme, "pupils", None) is not None
        if pupils or getattr(self.scheme, "box_norm", False) or boxes is not None or sizes is not None or attributes:
            self._add_bench(p, t, boxes, sizes, attributes)

    def _add_bench(self, p, t, boxes, sizes, attributes) -> None:
        """Add one chunk's :func:`augkit.metrics.benchmark`: its means weighted by its images (each
        is a mean over images, the AUC included), the primary NME the first chunk's."""
        b = metrics.benchmark(p, t, self.scheme, boxes, sizes, attributes, self.bench_threshold)
        n = b["n"]
        self._bench_primary = self._bench_primary or b["primary"]
        for key in [k for k in b if k.startswith("nme_")] + ["fr", "auc"]:
            self._bench[key] = self._bench.get(key, 0.0) + b[key] * n
        self._bench_n += n
        for name, sub in b.get("subsets", {}).items():
            acc = self._subsets.setdefault(name, {"nme": 0.0, "fr": 0.0, "auc": 0.0, "n": 0})
            if sub["n"]:
                for key in ("nme", "fr", "auc"):
                    acc[key] += sub[key] * sub["n"]
                acc["n"] += sub["n"]

    def bench_result(self) -> dict | None:
        """The ``benchmark`` block of :meth:`result` (None when nothing called for it)."""
        if not self._bench_n:
            return None
        n = self._bench_n
        out: dict = {key: v / n for key, v in self._bench.items() if key.startswith("nme_")}
        out.update(primary=self._bench_primary, fr=self._bench["fr"] / n, auc=self._bench["auc"] / n, n=n,
                   threshold=self.bench_threshold)
        if self._subsets:
            out["subsets"] = {name: {**{key: a[key] / a["n"] if a["n"] else float("nan")
                                        for key in ("nme", "fr", "auc")}, "n": a["n"]}
                              for name, a in self._subsets.items()}
        return out

    def _keep_worst(self, e: np.ndarray, idx: np.ndarray) -> None:
        fin = np.flatnonzero(np.isfinite(e))
        if self.n_worst <= 0 or not fin.size:
            return
        top = fin[np.argsort(-e[fin], kind="stable")[:self.n_worst]]
        for v, i in zip(e[top].tolist(), idx[top].tolist()):
            item = (v, -i)                     # on equal NME the lower index ranks worse
            if len(self._heap) < self.n_worst:
                heapq.heappush(self._heap, item)
            elif item > self._heap[0]:
                heapq.heapreplace(self._heap, item)

    def _check(self, pred, spread, truth, index):
        p = np.asarray(pred, dtype=np.float64)
        s = np.asarray(spread, dtype=np.float64)
        t = np.asarray(truth, dtype=np.float64)
        idx = np.asarray(index)
        if p.ndim != 3 or p.shape[2] != 2:
            raise InputError(f"predictions must be (images, points, x/y), a 3-D array with x/y last; got a "
                             f"{p.ndim}-D array")
        if t.ndim != 3 or t.shape[2] != 2:
            raise InputError(f"labels must be (images, points, x/y), a 3-D array with x/y last; got a "
                             f"{t.ndim}-D array")
        if p.shape[1] != t.shape[1]:
            raise InputError(f"the model predicts {p.shape[1]} points but the labels have {t.shape[1]}")
        if t.shape[1] != self.n_points:
            raise InputError(f"the labels have {t.shape[1]} points but {self.n_points} were expected")
        b = p.shape[0]
        if t.shape[0] != b or s.shape != p.shape[:2] or idx.shape != (b,):
            raise InputError(f"predictions, spread, labels and index must cover the same images and points: got "
                             f"{b} prediction rows, {t.shape[0]} label rows, {idx.size} indices and a spread of "
                             f"{s.shape[0] if s.ndim else 0} rows x {s.shape[1] if s.ndim > 1 else 0} points")
        if b and not np.issubdtype(idx.dtype, np.integer):
            raise InputError(f"index must hold integer image positions, got {idx.dtype}")
        return p, s, t, idx.astype(np.int64)

    def result(self) -> dict:
        """The metrics of everything added so far (see the class docstring)."""
        if self.n_images == 0:
            raise InputError("no image could be evaluated: " + (
                f"all {self.n_offered} were unreadable" if self.n_offered else "none was given"))
        pts, img = self._points.sample(), self._images.sample()
        worst = sorted(self._heap, reverse=True)
        out = {
            "mse": self._sq_sum / self._sq_n if self._sq_n else float("nan"),
            "nme": self._nme_sum / self.n_images,
            "fr": self._n_fail / self.n_images,
            "rho_point": _spearman(pts[:, 0], pts[:, 1]),
            "rho_image": _spearman(img[:, 0], img[:, 1]),
            "worst": [(-i, v) for v, i in worst],
            "n_images": self.n_images,
            "n_unreadable": self.n_offered - self.n_images,
            "parts": self.part_metrics(),
        }
        if self.calibration is not None and self.calibration.n_points:
            out["calibration"] = self.calibration.result()
        bench = self.bench_result()
        if bench is not None:
            out["benchmark"] = bench
        return out

    def part_metrics(self) -> dict:
        """MSE and NME of each part of the scheme (``{}`` without parts): the squared error over
        the part's points and coordinates, and the mean normalised point error."""
        parts = getattr(self.scheme, "parts", ()) or ()
        out = {}
        for name, (lo, hi) in parts:
            if hi >= self.n_points:
                continue
            sl = slice(lo, hi + 1)
            n, m = self._pt_n[sl].sum(), self._pt_ne_n[sl].sum()
            out[name] = {"mse": float(self._pt_sq[sl].sum() / n) if n else float("nan"),
                         "nme": float(self._pt_ne[sl].sum() / m) if m else float("nan")}
        return out


def _label_extras(b: int, boxes, sizes, attributes, ok):
    """The rows ``ok`` of the labels' boxes (B, 4), sizes (B,) and attribute flags (B,) each,
    checked to cover the chunk's ``b`` images."""
    def rows(a, what: str, shape: tuple):
        if a is None:
            return None
        a = np.asarray(a)
        if a.shape != (b,) + shape:
            raise InputError(f"{what} must be {(b,) + shape} for {b} images, got {a.shape}")
        return a[ok]
    boxes = rows(boxes, "boxes", (4,))
    sizes = rows(sizes, "box sizes", ())
    attrs = {str(k): rows(v, f"attribute {k!r}", ()) for k, v in attributes.items()} if attributes else None
    return (None if boxes is None else boxes.astype(np.float64), None if sizes is None else sizes.astype(np.float64),
            attrs)


def add_settings_chunk(accs, specs, member_idx, n_models: int, members, truth, start: int, ok=None,
                       member_sigma=None, extras=None) -> list:
    """Merge one chunk of union members per setting and add it to that setting's accumulator.

    The one step shared by the streaming :func:`augkit.tta.evaluate_tta` and the in-memory
    :func:`evaluate_settings`. ``members`` (B, M_union, K, 2), ``truth`` (B, K, 2), ``start`` the
    chunk's first image position, ``ok`` (B,) readable (None: all), ``member_sigma`` (B, M_union, K)
    the members' sigma (None: models without sigma; else each setting's is merged by
    :func:`~augkit.tta.predictor.merge_chunk` and calibrated), ``extras`` the chunk's label boxes,
    sizes and attributes (:meth:`EvalAccumulator.add`'s keywords; None: none). Returns
    ``[(points, spread)]`` per setting, unreadable rows NaN, and ``[(points, spread, sigma)]`` with sigma.
    """
    b = len(members)
    ok = np.ones(b, dtype=bool) if ok is None else np.asarray(ok, dtype=bool)
    pos = np.arange(start, start + b)
    out = []
    for acc, spec, ix in zip(accs, specs, member_idx):
        msig = None if member_sigma is None else np.asarray(member_sigma)[:, ix]
        pts, spr, sig = merge_chunk(members[:, ix], msig, spec, n_models)
        pts = np.where(ok[:, None, None], pts, np.nan)
        acc.add(pts, spr, truth, pos, sigma=sig, **(extras or {}))
        out.append((pts, spr) if sig is None else (pts, spr, sig))
    return out


def evaluate_settings(models, settings, images, truth, *, preprocess=None, scheme=None, max_batch=64,
                      n_models=None, progress=None, extras=None):
    """Metrics of several TTA settings on labelled images, in memory (the predictions are kept).

    The in-memory face of :func:`augkit.tta.evaluate_tta` (which streams from files and keeps only
    the metrics): the same union pass and the same :func:`add_settings_chunk`.

    Args:
        settings: list of ``(label, tta)`` where ``tta`` is anything ``get_spec`` takes.
        images: image paths or arrays; truth: (N, K, 2) in original pixels.
        extras: the labels' ``boxes`` (N, 4), ``sizes`` (N,) and ``attributes`` (name -> (N,)
            flags), as :func:`augkit.tta.inputs.read_labelled_extras` gives them (None: none), for
            the benchmark conventions (``benchmark`` in the metrics).

    Returns:
        ``(list[SettingResult], MemberPredictions over the union of views)``.
    """
    specs = [get_spec(t) for _, t in settings]
    members, idx, pred = union_predict(models, specs, images, preprocess=preprocess, scheme=scheme,
                                       max_batch=max_batch, progress=progress)
    truth = np.asarray(truth, dtype=np.float64)
    if truth.ndim != 3:
        raise InputError(f"labels must be (images, points, x/y), a 3-D array; got a {truth.ndim}-D array")
    if len(truth) != len(members.ok):
        raise InputError(f"{len(members.ok)} images but {len(truth)} rows of labels")
    accs = [EvalAccumulator(truth.shape[1], pred.scheme) for _ in specs]
    msig = getattr(members, "sigma", None)
    merged = add_settings_chunk(accs, specs, idx, len(pred.models), members.points, truth, 0, members.ok,
                                member_sigma=msig, extras=_chunk_extras(extras, 0, len(truth)))
    out = []
    for (label, _), spec, ix, acc, (pts, spr, *sig) in zip(settings, specs, idx, accs, merged):
        m = acc.result()
        m["members"] = len(ix)
        out.append(SettingResult(label, spec, pts, spr, m, sig[0] if sig else None))
    return out, members


def calibration_png(path, labels, results, title: str = "") -> list:
    """Draw the calibration of the model sigma of each setting whose metrics have a
    ``calibration`` block (see :func:`augkit.calibration.calibration_png`). Returns the labels
    drawn (none: nothing is written)."""
    from augkit.calibration import calibration_png as draw
    pairs = [(label, m["calibration"]) for label, m in zip(labels, results) if m.get("calibration")]
    if pairs:
        draw(path, [c for _, c in pairs], [label for label, _ in pairs],
             title or "calibration of the model sigma per TTA setting (dashed: perfectly calibrated)")
    return [label for label, _ in pairs]


_draw_calibration = calibration_png   # evaluate_tta's parameter calibration_png (a path) shadows the name


# -------------------------------------------------------------- augkit evaluate: the streaming run



class MeanShapeBaseline:
    """The prediction that ignores the image: one mean shape placed on every image.

    With a model carrying ``mean_shape`` (normalised model frame, as ``augkit train`` saves it),
    ``preprocess`` and ``input_size``, the training mean shape is mapped back through the
    preprocessing of each image's size (read from the file header); else the mean of ``truth``
    (original pixels) is used for every image. ``source`` says which.
    """

    def __init__(self, models, truth) -> None:
        k = truth.shape[1]
        m = next((m for m in models if _mean_shape(m, k) is not None and getattr(m, "preprocess", None) is not None
                  and getattr(m, "input_size", None)), None)
        self._cache: dict = {}
        if m is not None:
            h, w = m.input_size
            self.source = "training"
            self._pre, self._mean_px = m.preprocess, _mean_shape(m, k) * np.array([w, h], dtype=np.float64) - 0.5
        else:
            self.source = "labels"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)   # a point never labelled stays NaN
                self._fixed = np.nanmean(np.asarray(truth, dtype=np.float64), axis=0)

    def points(self, files, ok) -> np.ndarray:
        """(B, K, 2) baseline points for ``files``; NaN rows where ``ok`` is False."""
        if self.source == "labels":
            out = np.repeat(self._fixed[None], len(files), axis=0)
        else:
            out = np.stack([self._place(f) for f in files]) if len(files) else np.zeros((0,) + self._mean_px.shape)
        out[~np.asarray(ok, dtype=bool)] = np.nan
        return out

    def _place(self, path) -> np.ndarray:
        from augkit import geometry
        from augkit.io import ImageReadError, image_size
        try:
            size = tuple(int(v) for v in image_size(path))
        except (ImageReadError, OSError, TypeError, ValueError):
            return np.full(self._mean_px.shape, np.nan)
        if size not in self._cache:
            m = self._pre.plan(size)[0]
            self._cache[size] = geometry.apply_points(geometry.invert(np.asarray(m, dtype=np.float64)), self._mean_px)
        return self._cache[size]


def _mean_shape(model, k: int):
    ms = getattr(model, "mean_shape", None)
    if ms is None:
        return None
    ms = np.asarray(ms, dtype=np.float64)
    return ms if ms.shape == (k, 2) else None


@dataclass
class EvalReport:
    """What :func:`evaluate_tta` measured: ``results`` per setting (``labels``; the metrics of
    :class:`EvalAccumulator` plus ``members``), ``baseline`` (the mean-shape row's metrics, its
    ``baseline_source`` ``training`` or ``labels``), readable ``n_images``, ``errors`` and the
    files written."""

    data: str
    n_images: int
    n_models: int
    labels: list
    results: list
    baseline: dict | None
    baseline_source: str
    threshold: float
    errors: list = field(default_factory=list)
    json_path: str | None = None
    png_path: str | None = None
    png_label: str | None = None
    calibration_path: str | None = None

    @property
    def has_sigma(self) -> bool:
        """True when the settings' metrics hold the calibration of the models' sigma."""
        return any(m.get("calibration") for m in self.results)

    @property
    def best(self) -> int:
        """Index of the setting with the lowest MSE."""
        return min(range(len(self.results)), key=lambda i: self.results[i]["mse"])


def _settings(tta) -> list:
    """``[(label, spec)]``: no TTA first, then each setting other than ``none``."""
    ttas = [tta] if isinstance(tta, (str, os.PathLike)) or hasattr(tta, "views") else list(tta)
    return [("none", ins.as_spec("none"))] + [(_label(t), ins.as_spec(t)) for t in ttas if t != "none"]


def _label(tta) -> str:
    """How the report names a setting: a preset or a path as given, a spec by its name."""
    if isinstance(tta, (str, os.PathLike)):
        return os.fspath(tta)
    return getattr(tta, "name", None) or "views"


def evaluate_tta(models, data, *, tta=("flip",), threshold: float = 0.08, n_worst: int = 8, limit=None, png=None,
                 json_out=None, checkpoints=None, seed: int = 0, calibration_png=None,
                 compute: Compute | None = None) -> EvalReport:
    """MSE (original pixels), NME and failure rate of no TTA and each setting in ``tta``, a
    mean-shape baseline, the Spearman correlation of the TTA spread with the real error, and
    optionally a JSON of the table (``json_out``) and a PNG of the worst cases of the best setting.

    With models that give a per-landmark sigma, also the calibration of that sigma per setting
    (``calibration`` in each result) and its picture: ``calibration_png``, by default
    ``calibration.png`` in the folder of ``png`` (nothing when both are None).

    ``models``: callables or checkpoint paths (see :func:`augkit.tta.predict_to_file`); ``compute``:
    a :class:`~augkit.tta.Compute` (scheme, batch, workers, device, progress, warnings); ``data``: a
    labelled dataset; ``limit``: a random subset of that many images. Streaming: the memory held
    is the labels and the accumulators. Raises :class:`RunError` (one line) on bad input.
    """
    c = compute or Compute()
    from .runners import prepare_models
    files, truth, extras = ins.read_labelled_extras(data, limit, seed, c.warn)
    settings = _settings(tta)
    names = checkpoints or [os.fspath(m) for m in models if isinstance(m, (str, os.PathLike))]
    for _, s in settings[1:]:
        if names:
            ins.check_fitted_for(s, names, c.warn)
    for path in (json_out, png if n_worst else None):
        if path:
            ins.check_writable_out(path)
    pred, k, _ = prepare_models(models, settings[0][1], c.scheme, c.device, c.max_batch, truth, data)
    cal_png = _calibration_path(calibration_png, png)
    if cal_png and any(getattr(m, "has_sigma", False) for m in pred.models):
        ins.check_writable_out(cal_png)
    for _, s in settings[1:]:
        ins.check_merge_weights(s, len(pred.models), k)
    results, base, source, n_ok, errors = _stream(pred, [s for _, s in settings], files, truth, threshold, n_worst,
                                          c.workers, c.progress, extras)
    ins.check_some_readable(n_ok, len(files), errors, data)
    baseline = base.result()
    baseline.pop("worst", None)
    report = EvalReport(os.fspath(data), n_ok, len(pred.models), [label for label, _ in settings], results,
                        baseline, source, threshold, errors)
    if cal_png and report.has_sigma:
        _draw_calibration(cal_png, [os.path.basename(label) for label in report.labels], report.results)
        report.calibration_path = os.fspath(cal_png)
    if json_out:
        _write_json(report, json_out, names or [getattr(m, "name", "model") for m in pred.models])
    if n_worst and png:
        b = report.best
        report.png_label = os.path.basename(settings[b][0])
        _worst_png(png, pred.models, settings[b][1], c.scheme, files, truth, results[b]["worst"], n_worst,
                   report.png_label)
        report.png_path = os.fspath(png)
    return report


def _calibration_path(calibration_png, png):
    """Where the calibration picture goes: ``calibration_png``, else ``calibration.png`` beside
    ``png`` (``<stem>_calibration.png`` if ``png`` is itself named so), else None."""
    if calibration_png is not None:
        return calibration_png
    if png is None or not os.fspath(png):   # no worst-cases picture (--png ""): no calibration picture either
        return None
    png = os.fspath(png)
    out = os.path.join(os.path.dirname(png), "calibration.png")
    return os.path.splitext(png)[0] + "_calibration.png" if os.path.basename(png) == "calibration.png" else out


def _stream(pred, specs, files, truth, threshold, n_worst, workers, progress, extras=None):
    """One streamed pass over the union of the settings' views; returns ``(metrics per setting,
    the baseline's accumulator, its source, readable images, errors)``. ``extras``: the labels'
    ``boxes``, ``sizes``, ``attributes`` (whole-dataset arrays, sliced per chunk), or None."""
    from .predictor import TTAPredictor
    from .runners import progress_callback
    from .views import TTASpec
    n_models = len(pred.models)
    union, idx = union_views(specs, n_models)
    try:
        upred = TTAPredictor(pred.models, TTASpec(union, name="union"), scheme=pred.scheme, max_batch=pred.max_batch)
    except ValueError as e:
        raise RunError(ins.last_line(e)) from None
    accs = [EvalAccumulator(truth.shape[1], upred.scheme, n_worst=max(n_worst, 1), threshold=threshold)
            for _ in specs]
    base = MeanShapeBaseline(pred.models, truth)
    base_acc = EvalAccumulator(truth.shape[1], upred.scheme, n_worst=1, threshold=threshold)
    n_ok, errors = 0, []
    try:
        with progress_callback(progress, len(files), "evaluate") as step:
            for chunk in upred.iter_members(files, workers=workers, progress=step):
                t = truth[chunk.start:chunk.start + len(chunk)]
                ex = _chunk_extras(extras, chunk.start, len(chunk))
                n_ok += int(chunk.ok.sum())
                errors.extend(chunk.errors)
                if not chunk.ok.any():   # nothing to add (and the metrics count readable images only)
                    continue
                add_settings_chunk(accs, specs, idx, n_models, chunk.members, t, chunk.start, chunk.ok,
                                   member_sigma=getattr(chunk, "member_sigma", None), extras=ex)
                bp = base.points(files[chunk.start:chunk.start + len(chunk)], chunk.ok)
                base_acc.add(bp, np.zeros(bp.shape[:2]), t, np.arange(chunk.start, chunk.start + len(chunk)), **ex)
    except ValueError as e:
        raise RunError(ins.last_line(e)) from None
    if n_ok == 0:
        return [], base_acc, base.source, 0, errors
    results = []
    for acc, ix in zip(accs, idx):
        m = acc.result()
        m["members"] = len(ix)
        results.append(m)
    return results, base_acc, base.source, n_ok, errors


def _chunk_extras(extras, start: int, n: int) -> dict:
    """The rows ``start:start + n`` of the labels' boxes, sizes and attributes (keywords of
    :meth:`EvalAccumulator.add`; those the dataset lacks are left out)."""
    if not extras:
        return {}
    out: dict = {}
    for key in ("boxes", "sizes"):
        if extras.get(key) is not None:
            out[key] = extras[key][start:start + n]
    if extras.get("attributes"):
        out["attributes"] = {k: v[start:start + n] for k, v in extras["attributes"].items()}
    return out


def _json_value(v):
    """NaN -> None (JSON has no NaN), inside dicts and lists too; anything else as it is."""
    if isinstance(v, dict):
        return {key: _json_value(x) for key, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    return None if isinstance(v, float) and math.isnan(v) else v


def _write_json(report: EvalReport, path, checkpoints) -> None:
    from augkit.files import atomic_write_text
    rows = [{"setting": label, **{key: _json_value(v) for key, v in m.items() if key != "worst"}}
            for label, m in zip(report.labels, report.results)]
    base = {key: _json_value(v) for key, v in (report.baseline or {}).items()}
    out = {"data": report.data, "checkpoints": list(checkpoints), "results": rows,
           "mean_shape": {"source": report.baseline_source, **base}}
    if report.calibration_path:
        out["calibration_png"] = report.calibration_path
    atomic_write_text(path, json.dumps(out, indent=1) + "\n")
    report.json_path = os.fspath(path)


def _worst_png(png, models, spec, scheme, files, truth, worst, n_worst, label) -> None:
    """Draw the worst images of one setting: they are predicted again (a handful of images)."""
    from augkit.show import worst_png
    from .predictor import TTAPredictor
    pick = [i for i, _ in worst[:n_worst]]
    pred = TTAPredictor(models, spec, scheme=scheme)
    res = pred.predict([files[i] for i in pick])
    worst_png(png, [files[i] for i in pick], np.asarray(truth[pick], dtype=np.float64), res.points, res.spread,
              pred.scheme, n_worst, f"worst {n_worst} of {label} (green truth, red prediction, yellow circle: "
                                    "TTA spread)")


# ------------------------------------------------------------------------------------------ tables

def format_table(header: list, rows: list, gap: int = 2) -> list:
    """Lines of a text table: the first column left-aligned, the others right-aligned, every
    column as wide as its widest cell (header included) plus ``gap``."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = []
    for cells in [header] + rows:
        first = f"{cells[0]:<{widths[0]}}"
        lines.append(first + "".join(f"{c:>{w + gap}}" for c, w in zip(cells[1:], widths[1:])))
    return lines


def part_table(labels: list, results: list) -> list:
    """Lines of the per-part table (MSE / NME of each part under each setting), none without parts."""
    names = list(results[0].get("parts") or {}) if results else []
    if not names:
        return []
    rows = [[name] + [f"{r['parts'][name]['mse']:.3f} / {r['parts'][name]['nme']:.4f}" for r in results]
            for name in names]
    return ["per part, MSE / NME:"] + format_table(["part"] + labels, rows)


_BENCH_COLUMNS = (("nme_norm", "NME_io"), ("nme_pupils", "NME_ip"), ("nme_box", "NME_box"))


def benchmark_table(labels: list, results: list) -> list:
    """Lines of the benchmark-convention table (one row per setting with a ``benchmark`` block:
    the NME by inter-ocular / inter-pupil distance / box size that apply, FR and AUC of the primary
    one at the threshold) and, with attribute flags, the per-subset table; none without them."""
    pairs = [(os.path.basename(label), m["benchmark"]) for label, m in zip(labels, results) if m.get("benchmark")]
    if not pairs:
        return []
    first = pairs[0][1]
    thr = format(first["threshold"], "g")
    cols = [(key, name + ("*" if key == first["primary"] else "")) for key, name in _BENCH_COLUMNS
            if any(key in b for _, b in pairs)]
    rows = [[label] + [f"{b[key]:.4f}" if key in b else "n/a" for key, _ in cols] + [_pct(b["fr"]), f"{b['auc']:.4f}"]
            for label, b in pairs]
    lines = [f"benchmark conventions (* the benchmark's own NME; FR and AUC@{thr} of it):"]
    lines += format_table(["setting"] + [name for _, name in cols] + [f"FR@{thr}", f"AUC@{thr}"], rows)
    lines.append("NME_io: by the inter-ocular distance (the scheme's norm points); NME_ip: by the inter-pupil "
                 "distance; NME_box: by the face box size sqrt(w*h); AUC: area under the CED up to the threshold / "
                 "threshold")
    names = list(first.get("subsets") or {})
    if names:
        sub_rows = [[f"{name} ({first['subsets'][name]['n']})"]
                    + [f"{b['subsets'][name]['nme']:.4f} / {_pct(b['subsets'][name]['fr'])} / "
                       f"{b['subsets'][name]['auc']:.4f}" if name in b.get("subsets", {}) else "n/a"
                       for _, b in pairs] for name in names]
        lines.append(f"per attribute subset (faces flagged), NME / FR@{thr} / AUC@{thr}:")
        lines += format_table(["subset"] + [label for label, _ in pairs], sub_rows)
    return lines


def _f(x) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.3f}"


def _pct(x) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.1f}%"


def calibration_table(labels: list, results: list) -> list:
    """Lines of the calibration table of the models' sigma (one row per setting with a
    ``calibration`` block) and its legend; none without sigma."""
    rows, promised = [], None
    for label, m in zip(labels, results):
        c = m.get("calibration")
        if not c:
            continue
        promised = (c["promised_1"], c["promised_2"])
        rows.append([os.path.basename(label), _pct(c["coverage_1"]), _pct(c["coverage_2"]), _f(c["rho_image"]),
                     _f(c["rho_point"]), _f(c["scale"])])
    if not rows or promised is None:
        return []
    header = ["setting", f"in_1sd ({_pct(promised[0])})", f"in_2sd ({_pct(promised[1])})", "rho_img", "rho_pt",
              "ML_scale"]
    return (["model sigma calibration:"] + format_table(header, rows)
            + ["in_ksd: points with |error| <= k sigma (in brackets: what an isotropic Gaussian promises); "
               "rho_img / rho_pt: Spearman(sigma, error)",
               "over images (RMS over points) / over points; ML_scale: the factor on sigma that fits the errors "
               "best (1: calibrated, above 1: sigma too small)"])


def report_lines(report: EvalReport, n_checkpoints: int | None = None) -> list:
    """The printed evaluation: a header line, the table (mean-shape row first), the legend, the
    per-part table, and with sigma models the calibration table of their sigma."""
    n = report.n_models if n_checkpoints is None else n_checkpoints
    table = []
    if report.baseline is not None:
        b = report.baseline
        table.append(["mean-shape", "-", f"{b['mse']:.3f}", f"{b['nme']:.4f}", f"{b['fr']:.3f}", "n/a", "n/a"])
    for label, m in zip(report.labels, report.results):
        table.append([os.path.basename(label), str(m["members"]), f"{m['mse']:.3f}", f"{m['nme']:.4f}",
                      f"{m['fr']:.3f}", _f(m["rho_point"]), _f(m["rho_image"])])
    header = ["setting", "members", "MSE", "NME", "FR@" + format(report.threshold, "g"), "rho_pt", "rho_img"]
    src = ("the checkpoint's training mean shape on every image" if report.baseline_source == "training"
           else "the mean of these labels on every image (the checkpoint carries no training mean shape)")
    lines = [f"{report.data}: {report.n_images} images, {n} model(s)"] + format_table(header, table)
    lines.append("rho_pt: Spearman(spread, point error) over all points; rho_img: Spearman(mean spread, NME) "
                 "over images")
    lines.append(f"mean-shape: {src}, the baseline a model must beat")
    if report.baseline is not None and report.results and report.results[report.best]["mse"] > report.baseline["mse"]:
        lines.append(f"WARNING: every setting has a higher MSE than the mean shape ({report.baseline['mse']:.3f}): "
                     "the model does worse than predicting the same shape on every image")
    labels = [os.path.basename(label) for label in report.labels]
    results = report.results
    with_base = report.baseline is not None and bool(report.baseline.get("benchmark"))
    bench = benchmark_table((["mean-shape"] if with_base else []) + labels,
                            ([report.baseline] if with_base else []) + results)
    if report.baseline is not None and report.baseline.get("parts"):
        labels, results = ["mean-shape"] + labels, [report.baseline] + results
    return lines + part_table(labels, results) + bench + calibration_table(report.labels, report.results)
