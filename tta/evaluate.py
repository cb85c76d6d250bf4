"""Evaluation of TTA settings side by side, sharing the forwards of views that settings have in
common, and a picture of the worst predictions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from augkit import metrics

from .predictor import MemberPredictions, TTAPredictor
from .views import TTASpec, get_spec

__all__ = ["union_predict", "evaluate_settings", "spearman_spread_error", "worst_png", "SettingResult"]


@dataclass
class SettingResult:
    """One setting's merged prediction and metrics (original pixels)."""

    label: str
    spec: TTASpec
    points: np.ndarray      # (N, K, 2)
    spread: np.ndarray      # (N, K)
    metrics: dict           # mse, nme, fr, rho_point, rho_image, members


def union_predict(models, specs, images, *, preprocess=None, scheme=None, max_batch=64, progress=None):
    """Predict the union of the views of several specs in one pass.

    Returns ``(MemberPredictions over the union, [member indices of each spec])`` — index lists
    are model-major (``model * U + view``) so ``MemberPredictions.merge(spec, n_models, idx)`` works.
    """
    models = list(models) if isinstance(models, (list, tuple)) else [models]
    keys, union = {}, []
    view_idx = []
    for spec in specs:
        idx = []
        for v in spec.views:
            k = v.key()
            if k not in keys:
                keys[k] = len(union)
                union.append(v)
            idx.append(keys[k])
        view_idx.append(idx)
    pred = TTAPredictor(models, TTASpec(union, name="union"), preprocess=preprocess, scheme=scheme,
                        max_batch=max_batch)
    members = pred.predict_members(images, progress=progress)
    u = len(union)
    member_idx = [[mi * u + j for mi in range(len(models)) for j in idx] for idx in view_idx]
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


def evaluate_settings(models, settings, images, truth, *, preprocess=None, scheme=None, max_batch=64,
                      n_models=None, progress=None):
    """Metrics of several TTA settings on labelled images.

    Args:
        settings: list of ``(label, tta)`` where ``tta`` is anything ``get_spec`` takes.
        images: image paths or arrays; truth: (N, K, 2) in original pixels.

    Returns:
        ``(list[SettingResult], MemberPredictions over the union of views)``.
    """
    specs = [get_spec(t) for _, t in settings]
    members, idx, pred = union_predict(models, specs, images, preprocess=preprocess, scheme=scheme,
                                       max_batch=max_batch, progress=progress)
    sch = pred.scheme
    n_models = len(pred.models)
    truth = np.asarray(truth, dtype=np.float64)
    ok = members.ok
    out = []
    for (label, _), spec, ix in zip(settings, specs, idx):
        res = members.merge(spec, n_models, ix)
        p, t = res.points[ok], truth[ok]
        m = metrics.summary(p, t, sch)
        m["rho_point"], m["rho_image"] = spearman_spread_error(res.spread[ok], p, t, sch)
        m["members"] = len(ix)
        out.append(SettingResult(label, spec, res.points, res.spread, m))
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
