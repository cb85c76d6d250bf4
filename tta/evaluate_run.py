"""The streaming evaluation behind ``augkit evaluate``: :func:`evaluate_tta` and its report.

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

import json
import math
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import inputs as ins
from .evaluate import EvalAccumulator, add_settings_chunk, union_views
from .inputs import RunError

__all__ = ["EvalReport", "MeanShapeBaseline", "calibration_table", "evaluate_tta", "format_table", "part_table",
           "report_lines"]


class MeanShapeBaseline:
    """The prediction that ignores the image: one mean shape placed on every image.

    With a model carrying ``mean_shape`` (normalised model frame, as ``augkit train`` saves it),
    ``preprocess`` and ``input_size``, the training mean shape is mapped back through the
    preprocessing of each image's size (read from the file header); else the mean of ``truth``
    (original pixels) is used for every image. ``source`` says which.
    """

    def __init__(self, models, truth):
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
    return [("none", ins.as_spec("none"))] + [(t if isinstance(t, str) else getattr(t, "name", os.fspath(t)),
                                               ins.as_spec(t)) for t in ttas if t != "none"]


def evaluate_tta(models, data, *, tta=("flip",), threshold: float = 0.08, n_worst: int = 8, limit=None, png=None,
             json_out=None, scheme=None, max_batch: int = 64, workers: int = 0, progress=None, checkpoints=None,
             loader=None, warn=None, seed: int = 0, calibration_png=None) -> EvalReport:
    """MSE (original pixels), NME and failure rate of no TTA and each setting in ``tta``, a
    mean-shape baseline, the Spearman correlation of the TTA spread with the real error, and
    optionally a JSON of the table (``json_out``) and a PNG of the worst cases of the best setting.

    With models that give a per-landmark sigma, also the calibration of that sigma per setting
    (``calibration`` in each result) and its picture: ``calibration_png``, by default
    ``calibration.png`` in the folder of ``png`` (nothing when both are None).

    ``models``: callables or checkpoint paths (see :func:`augkit.tta.predict_to_file`); ``data``: a
    labelled dataset; ``limit``: a random subset of that many images. Streaming: the memory held
    is the labels and the accumulators. Raises :class:`RunError` (one line) on bad input.
    """
    from .runners import _prepare
    files, truth = ins.read_labelled(data, limit, seed, warn)
    settings = _settings(tta)
    names = checkpoints or [os.fspath(m) for m in models if isinstance(m, (str, os.PathLike))]
    for _, s in settings[1:]:
        if names:
            ins.check_fitted_for(s, names, warn)
    for path in (json_out, png if n_worst else None):
        if path:
            ins.check_writable_out(path)
    pred, k, _ = _prepare(models, settings[0][1], scheme, loader, max_batch, truth, data)
    cal_png = _calibration_path(calibration_png, png)
    if cal_png and any(getattr(m, "has_sigma", False) for m in pred.models):
        ins.check_writable_out(cal_png)
    for _, s in settings[1:]:
        ins.check_merge_weights(s, len(pred.models), k)
    results, base, source, n_ok, errors = _stream(pred, [s for _, s in settings], files, truth, threshold, n_worst,
                                          workers, progress)
    ins.check_some_readable(n_ok, len(files), errors, data)
    report = EvalReport(os.fspath(data), n_ok, len(pred.models), [label for label, _ in settings], results,
                        base.result(), source, threshold, errors)
    report.baseline.pop("worst", None)
    if cal_png and report.has_sigma:
        from .evaluate import calibration_png as draw
        draw(cal_png, [os.path.basename(label) for label in report.labels], report.results)
        report.calibration_path = os.fspath(cal_png)
    if json_out:
        _write_json(report, json_out, names or [getattr(m, "name", "model") for m in pred.models])
    if n_worst and png:
        b = report.best
        report.png_label = os.path.basename(settings[b][0])
        _worst_png(png, pred.models, settings[b][1], scheme, files, truth, results[b]["worst"], n_worst,
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


def _stream(pred, specs, files, truth, threshold, n_worst, workers, progress):
    """One streamed pass over the union of the settings' views; returns ``(metrics per setting,
    the baseline's accumulator, its source, readable images, errors)``."""
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
                n_ok += int(chunk.ok.sum())
                errors.extend(chunk.errors)
                if not chunk.ok.any():   # nothing to add (and the metrics count readable images only)
                    continue
                add_settings_chunk(accs, specs, idx, n_models, chunk.members, t, chunk.start, chunk.ok,
                                   member_sigma=getattr(chunk, "member_sigma", None))
                bp = base.points(files[chunk.start:chunk.start + len(chunk)], chunk.ok)
                base_acc.add(bp, np.zeros(bp.shape[:2]), t, np.arange(chunk.start, chunk.start + len(chunk)))
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


def _json_value(v):
    """NaN -> None (JSON has no NaN), inside dicts and lists too; anything else as it is."""
    if isinstance(v, dict):
        return {key: _json_value(x) for key, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    return None if isinstance(v, float) and math.isnan(v) else v


def _write_json(report: EvalReport, path, checkpoints) -> None:
    from augkit.config import atomic_write_text
    rows = [{"setting": label, **{key: _json_value(v) for key, v in m.items() if key != "worst"}}
            for label, m in zip(report.labels, report.results)]
    base = {key: _json_value(v) for key, v in report.baseline.items()}
    out = {"data": report.data, "checkpoints": list(checkpoints), "results": rows,
           "mean_shape": {"source": report.baseline_source, **base}}
    if report.calibration_path:
        out["calibration_png"] = report.calibration_path
    atomic_write_text(path, json.dumps(out, indent=1) + "\n")
    report.json_path = os.fspath(path)


def _worst_png(png, models, spec, scheme, files, truth, worst, n_worst, label) -> None:
    """Draw the worst images of one setting: they are predicted again (a handful of images)."""
    from .evaluate import worst_png
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
    if report.baseline is not None and report.baseline.get("parts"):
        labels, results = ["mean-shape"] + labels, [report.baseline] + results
    return lines + part_table(labels, results) + calibration_table(report.labels, report.results)
