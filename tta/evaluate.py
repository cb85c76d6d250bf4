"""Evaluation of TTA settings side by side, sharing the forwards of views that settings have in
common, and a picture of the worst predictions.

:class:`EvalAccumulator` computes one setting's metrics chunk by chunk in bounded memory: running
sums for MSE, NME and the failure rate, a bounded heap of the worst images, and bounded uniform
samples (reservoirs) of (spread, error) pairs for the Spearman correlations — exact whenever the
data fits in the sample. :func:`evaluate_settings` is one ``add`` per setting. When the models give a
per-landmark sigma, each setting also gets the calibration of that sigma against the real errors
(:class:`augkit.calibration.CalibrationAccumulator`) and :func:`calibration_png` draws it.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from augkit import metrics
from augkit.calibration import CalibrationAccumulator, Reservoir

from .predictor import TTAPredictor, merge_chunk
from .views import TTASpec, get_spec

__all__ = [
    "EvalAccumulator",
    "SettingResult",
    "add_settings_chunk",
    "calibration_png",
    "evaluate_settings",
    "spearman_spread_error",
    "union_predict",
    "union_views",
    "worst_png",
]


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
    keys, union, view_idx = {}, [], []
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
    """

    def __init__(self, n_points: int, scheme=None, n_worst: int = 8, spearman_sample: int = 200_000,
                 seed: int = 0, threshold: float = 0.08):
        if spearman_sample < 3:
            raise ValueError(f"spearman_sample must be at least 3, got {spearman_sample}")
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

    def add(self, pred, spread, truth, index, sigma=None) -> None:
        """Add one chunk: ``pred`` (B, K, 2) merged points (an all-NaN row is an unreadable image),
        ``spread`` (B, K), ``truth`` (B, K, 2) (NaN points are left out), ``index`` (B,) the images'
        positions in the full list (reported in ``worst``), ``sigma`` (B, K) the models' merged
        sigma in original pixels (None: models without sigma)."""
        p, s, t, idx = self._check(pred, spread, truth, index)
        self.n_offered += len(p)
        ok = ~np.isnan(p).all(axis=(1, 2))
        p, s, t, idx = p[ok], s[ok], t[ok], idx[ok]
        if sigma is not None:
            sg = np.asarray(sigma, dtype=np.float64)
            if sg.shape != ok.shape + (self.n_points,):
                raise ValueError(f"sigma must be (images, points) = ({len(ok)}, {self.n_points}), got {sg.shape}")
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
            raise ValueError(f"predictions must be (images, points, x/y), a 3-D array with x/y last; got a "
                             f"{p.ndim}-D array")
        if t.ndim != 3 or t.shape[2] != 2:
            raise ValueError(f"labels must be (images, points, x/y), a 3-D array with x/y last; got a "
                             f"{t.ndim}-D array")
        if p.shape[1] != t.shape[1]:
            raise ValueError(f"the model predicts {p.shape[1]} points but the labels have {t.shape[1]}")
        if t.shape[1] != self.n_points:
            raise ValueError(f"the labels have {t.shape[1]} points but {self.n_points} were expected")
        b = p.shape[0]
        if t.shape[0] != b or s.shape != p.shape[:2] or idx.shape != (b,):
            raise ValueError(f"predictions, spread, labels and index must cover the same images and points: got "
                             f"{b} prediction rows, {t.shape[0]} label rows, {idx.size} indices and a spread of "
                             f"{s.shape[0] if s.ndim else 0} rows x {s.shape[1] if s.ndim > 1 else 0} points")
        if b and not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"index must hold integer image positions, got {idx.dtype}")
        return p, s, t, idx.astype(np.int64)

    def result(self) -> dict:
        """The metrics of everything added so far (see the class docstring)."""
        if self.n_images == 0:
            raise ValueError("no image could be evaluated: " + (
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


def add_settings_chunk(accs, specs, member_idx, n_models: int, members, truth, start: int, ok=None,
                       member_sigma=None) -> list:
    """Merge one chunk of union members per setting and add it to that setting's accumulator.

    The one step shared by the streaming :func:`augkit.tta.evaluate_tta` and the in-memory
    :func:`evaluate_settings`. ``members`` (B, M_union, K, 2), ``truth`` (B, K, 2), ``start`` the
    chunk's first image position, ``ok`` (B,) readable (None: all), ``member_sigma`` (B, M_union, K)
    the members' sigma (None: models without sigma; else each setting's is merged by
    :func:`~augkit.tta.predictor.merge_chunk` and calibrated). Returns ``[(points, spread)]`` per setting, unreadable
    rows NaN, and ``[(points, spread, sigma)]`` with sigma.
    """
    b = len(members)
    ok = np.ones(b, dtype=bool) if ok is None else np.asarray(ok, dtype=bool)
    pos = np.arange(start, start + b)
    out = []
    for acc, spec, ix in zip(accs, specs, member_idx):
        msig = None if member_sigma is None else np.asarray(member_sigma)[:, ix]
        pts, spr, sig = merge_chunk(members[:, ix], msig, spec, n_models)
        pts = np.where(ok[:, None, None], pts, np.nan)
        acc.add(pts, spr, truth, pos, sigma=sig)
        out.append((pts, spr) if sig is None else (pts, spr, sig))
    return out


def evaluate_settings(models, settings, images, truth, *, preprocess=None, scheme=None, max_batch=64,
                      n_models=None, progress=None):
    """Metrics of several TTA settings on labelled images, in memory (the predictions are kept).

    The in-memory face of :func:`augkit.tta.evaluate_tta` (which streams from files and keeps only
    the metrics): the same union pass and the same :func:`add_settings_chunk`.

    Args:
        settings: list of ``(label, tta)`` where ``tta`` is anything ``get_spec`` takes.
        images: image paths or arrays; truth: (N, K, 2) in original pixels.

    Returns:
        ``(list[SettingResult], MemberPredictions over the union of views)``.
    """
    specs = [get_spec(t) for _, t in settings]
    members, idx, pred = union_predict(models, specs, images, preprocess=preprocess, scheme=scheme,
                                       max_batch=max_batch, progress=progress)
    truth = np.asarray(truth, dtype=np.float64)
    if truth.ndim != 3:
        raise ValueError(f"labels must be (images, points, x/y), a 3-D array; got a {truth.ndim}-D array")
    if len(truth) != len(members.ok):
        raise ValueError(f"{len(members.ok)} images but {len(truth)} rows of labels")
    accs = [EvalAccumulator(truth.shape[1], pred.scheme) for _ in specs]
    msig = getattr(members, "sigma", None)
    merged = add_settings_chunk(accs, specs, idx, len(pred.models), members.points, truth, 0, members.ok,
                                member_sigma=msig)
    out = []
    for (label, _), spec, ix, acc, (pts, spr, *sig) in zip(settings, specs, idx, accs, merged):
        m = acc.result()
        m["members"] = len(ix)
        out.append(SettingResult(label, spec, pts, spr, m, sig[0] if sig else None))
    return out, members


def worst_png(path, files, truth, pred, spread, scheme=None, n: int = 8, title: str = "") -> list:
    """Draw the ``n`` images with the highest NME: truth (green), prediction (red) with a circle of
    radius = the per-point spread (TTA uncertainty). Returns the indices drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from augkit.config import atomic_write_bytes
    from augkit.io import ImageReadError, read_image

    truth, pred, spread = (np.asarray(a, dtype=np.float64) for a in (truth, pred, spread))
    ok = np.isfinite(pred).all(axis=(1, 2)) & np.isfinite(truth).all(axis=(1, 2))
    idx = np.flatnonzero(ok)
    nme = metrics.per_image_nme(pred[idx], truth[idx], scheme)
    worst = idx[np.argsort(-nme)[:n]]
    e_of = dict(zip(idx.tolist(), nme.tolist()))
    cols = min(4, max(1, len(worst)))
    rows = max(1, -(-len(worst) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), worst):
        try:
            ax.imshow(read_image(files[i]) if isinstance(files[i], str) else files[i])
        except ImageReadError:
            pass
        ax.scatter(truth[i, :, 0], truth[i, :, 1], s=6, c="lime", label="truth")
        ax.scatter(pred[i, :, 0], pred[i, :, 1], s=6, c="red", label="prediction")
        for (x, y), r in zip(pred[i], spread[i]):
            if r > 0:
                ax.add_patch(plt.Circle((x, y), r, fill=False, color="yellow", lw=0.6))
        name = files[i].rsplit("/", 1)[-1] if isinstance(files[i], str) else f"#{i}"
        ax.set_title(f"{name[:28]}\nNME {e_of[int(i)]:.3f}", fontsize=7)
    if len(worst):
        axes.ravel()[0].legend(loc="lower left", fontsize=6)
    fig.suptitle(title or "worst predictions (green truth, red prediction, yellow: TTA spread)", fontsize=9)
    fig.tight_layout()
    buf = __import__("io").BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return worst.tolist()


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
