"""Streaming runners: predict to a file and fit the merge weights, as a Python user calls them.

``augkit predict`` and ``augkit tta fit`` are thin command lines over :func:`predict_to_file` and
:func:`fit_tta`; ``augkit evaluate`` over :func:`augkit.tta.evaluate_tta` (``evaluate.py``). Models
are callables (``augkit.train`` checkpoints loaded by :func:`load_models`, or any callable the
predictor takes) or checkpoint paths, loaded after the cheap checks. Bad input raises
:class:`~augkit.tta.inputs.RunError` with one line; ``warn(line)`` receives notes and warnings.
Importing this module imports no torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from . import inputs as ins
from .inputs import RunError

__all__ = [
    "Compute",
    "FitReport",
    "PredictSummary",
    "RunError",
    "fit_tta",
    "load_models",
    "predict_to_file",
    "prepare_models",
    "progress_callback",
]


@contextmanager
def progress_callback(progress, total: int, desc: str):
    """The ``progress=`` convention of the runners: ``True`` draws :class:`~augkit.tta.progress.Progress`
    (a bar on a terminal, plain lines with an ETA otherwise) on stderr; a callable(n) is used as
    it is; ``None``/``False`` shows nothing. Yields the callable to hand to the predictor."""
    if progress is True:
        from .progress import Progress
        with Progress(total, desc) as bar:
            yield bar.update
    else:
        yield progress or None


def load_models(paths, device: str = "auto") -> list:
    """Checkpoints -> ``LandmarkModel`` callables (``augkit.models.checkpoint.load_model``), each
    named by its file (the full path when two share a file name) and carrying the training mean
    shape (``mean_shape``, normalised model frame) when the checkpoint holds one."""
    try:
        from augkit.models.checkpoint import load_model
    except ImportError as e:
        raise RunError(f"cannot load checkpoints: augkit.train is not available ({e})") from None
    paths = [os.fspath(p) for p in paths]
    short = [os.path.basename(p) for p in paths]
    models = []
    for p, name in zip(paths, short if len(set(short)) == len(short) else paths):
        try:
            m = load_model(p, device=device)
        except Exception as e:  # noqa: BLE001  (any failure of a bad checkpoint: one line naming it)
            raise RunError(f"{p}: cannot load the checkpoint: {e}") from None
        m.name = name   # member names in tables: <checkpoint>/<view>
        models.append(m)
    return models


def _models(models, device):
    """``(callables, names for a fitted spec)``: checkpoint paths are loaded onto ``device``."""
    models = _as_list(models)
    if models and all(isinstance(m, (str, os.PathLike)) for m in models):
        paths = [os.fspath(m) for m in models]
        return list(load_models(paths, device)), [os.path.basename(p) for p in paths]
    return models, [getattr(m, "name", f"model{i}") for i, m in enumerate(models)]


def _predictor(models, spec, scheme, max_batch):
    from .predictor import TTAPredictor
    try:
        return TTAPredictor(models, spec, scheme=scheme, max_batch=max_batch)
    except ValueError as e:
        raise RunError(str(e)) from None


def prepare_models(models, spec, scheme, device, max_batch, truth=None, data=None, check_weights=True):
    """Load (paths), check K against the scheme, the labels and the spec's weights: ``(predictor,
    K, member names)``."""
    models, names = _models(models, device)
    k = ins.check_scheme_points(models, scheme)
    if truth is not None:
        ins.check_labels_match(k, truth, data)
    if check_weights:
        ins.check_merge_weights(spec, len(models), k)
    return _predictor(models, spec, scheme, max_batch), k, names


# ---------------------------------------------------------------------------------------- predict

@dataclass(frozen=True)
class Compute:
    """How :func:`predict_to_file`, :func:`~augkit.tta.evaluate_tta` and :func:`fit_tta` compute and
    report, the same for all three (``augkit predict / evaluate / tta fit``'s ``--scheme``,
    ``--max-batch``, ``--workers``, ``--device``).

    Attributes:
        scheme: landmark scheme (name, file or :class:`augkit.Scheme`) for flip views; default: the
            first model's.
        max_batch: most model-input images per forward (all views of several images stacked).
        workers: processes that decode and warp the views while the model runs (0: this process).
        device: torch device for checkpoints (``auto``: CUDA when available, else the CPU).
        progress: ``True`` for the progress convention on stderr (a bar on a terminal, a line
            every 5% with an ETA otherwise), or a callable(n) told of each image queued.
        warn: a callable(line) for notes and warnings (default: none shown).
    """

    scheme: object = None
    max_batch: int = 64
    workers: int = 0
    device: str = "auto"
    progress: object = None
    warn: Callable[[str], None] | None = None


@dataclass
class PredictSummary:
    """What :func:`predict_to_file` wrote: ``rows`` written, ``ok`` readable images of ``n_images``,
    ``errors`` ((name, message) of unreadable ones), ``missing`` (listed images without a finite
    prediction, left out of a submission), the format, the TTA setting and members per image."""

    out: str
    fmt: str
    rows: int
    ok: int
    n_images: int
    errors: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    tta: str = "none"
    members: int = 1


def predict_to_file(models, data, out, *, tta="none", fmt: str = "auto", uncertainty: bool = False,
                    strict: bool = False, checkpoints=None, compute: Compute | None = None) -> PredictSummary:
    """Predict every image of ``data`` with TTA and write the rows as the chunks come back.

    Args:
        models: model callables, or checkpoint paths (loaded by :func:`load_models` onto ``device``).
        data: a folder with ``test_points.csv`` (competition test, in its order), a folder of
            images (or with ``images/``), one image, or a list of image paths / uint8 RGB arrays.
        out: the file; written through a temporary renamed onto it at the end (a failure leaves
            an earlier ``out`` as it was).
        tta: preset name, spec file or ``TTASpec``.
        fmt: ``auto`` (see :func:`~augkit.tta.inputs.output_format`), ``submission``, ``csv``, ``json``.
        uncertainty: add each landmark's spread (CSV/JSON only); with models that report σ also
            the merged model σ (``Point_k_SIGMA`` columns after the spread's; JSON ``"sigma"``).
        strict: fail on the first unreadable image; else a submission row comes from a mid-grey
            image of its size and CSV/JSON leave it out.
        checkpoints: the checkpoint paths the models came from, to check a fitted spec against.
        compute: how to compute and report (:class:`Compute`: scheme, batch, workers, device,
            progress, warnings); default ``Compute()``.

    Returns:
        :class:`PredictSummary`. Raises :class:`RunError` (one line) on bad input.
    """
    c = compute or Compute()
    paths, names, tp = _inputs(data)
    fmt = ins.output_format(out, fmt, tp is not None)
    if fmt == "submission" and uncertainty:
        raise RunError("--uncertainty goes with --format csv or json (the submission has no room for it)")
    spec = ins.as_spec(tta)
    paths_given = all(isinstance(m, (str, os.PathLike)) for m in _as_list(models))
    if checkpoints is not None or paths_given:
        ins.check_fitted_for(spec, checkpoints or _as_list(models), c.warn)
    ins.check_writable_out(out)
    if not any(not isinstance(p, str) or os.path.exists(p) for p in paths):
        raise RunError(f"{_where(data)}: none of the {len(paths)} listed image(s) exists (first: {paths[0]}); "
                       f"{out} left unchanged")
    pred, k, _ = prepare_models(models, spec, c.scheme, c.device, c.max_batch)
    if tp is not None and k is not None:
        from .outputs import check_test_points
        try:
            check_test_points(tp, k, ins.test_points_path(data))
        except ValueError as e:
            raise RunError(str(e)) from None
    try:
        with progress_callback(c.progress, len(paths), "predict") as step:
            counts = _stream(pred, paths, names, tp, fmt, out, uncertainty, strict, c.workers, step, data)
    except RunError:
        raise
    except ValueError as e:   # a view or model that gives the wrong shape: one line, out untouched
        raise RunError(ins.last_line(e)) from None
    return PredictSummary(os.fspath(out), fmt, counts["rows"], counts["ok"], len(paths), counts["errors"],
                          counts["missing"], pred.spec.name, len(pred.member_names))


def _inputs(data):
    """``(images, names, test_points or None)``: a path as :func:`~augkit.tta.inputs.resolve_inputs`
    reads it, or a list of image paths / uint8 RGB arrays (named by file name, arrays ``#i``)."""
    if not isinstance(data, (list, tuple)):
        return ins.resolve_inputs(data)
    if not data:
        raise RunError("no images given")
    items = [os.path.abspath(os.fspath(d)) if isinstance(d, (str, os.PathLike)) else d for d in data]
    names = [os.path.basename(d) if isinstance(d, str) else f"#{i}" for i, d in enumerate(items)]
    return items, names, None


def _where(data) -> str:
    return f"the {len(data)} images given" if isinstance(data, (list, tuple)) else os.fspath(data)


def _as_list(models) -> list:
    return list(models) if isinstance(models, (list, tuple)) else [models]


def _stream(pred, paths, names, tp, fmt, out, uncertainty, strict, workers, progress, data) -> dict:
    """Predict chunk by chunk and write each chunk's rows at once, inside ``atomic_open(out)``."""
    from augkit.files import OutputError, atomic_open

    from . import outputs
    submission = fmt == "submission"
    n_ok, errors, missing = 0, [], []
    try:
        with atomic_open(out, "w", newline="") as f:
            with_sigma = uncertainty and pred.has_sigma
            writer = (outputs.SubmissionWriter(f, max((len(i) for _, i in tp), default=0)) if submission
                      else outputs.points_writer(f, fmt, uncertainty, with_sigma=with_sigma))
            for chunk in pred.iter_predict(paths, names, workers=workers, progress=progress,
                                           fallback="grey" if submission and not strict else None):
                if chunk.errors and strict:
                    j = int(np.flatnonzero(~chunk.ok)[0])
                    where = (f"{ins.test_points_path(data)}: line {chunk.start + j + 2}: " if tp is not None
                             else f"image {chunk.start + j + 1} of {len(paths)}: ")
                    raise RunError(f"{where}{chunk.errors[0][1]} (--strict; {out} left unchanged)")
                errors.extend(chunk.errors)
                n_ok += int(chunk.ok.sum())
                for j, name in enumerate(chunk.names):
                    if isinstance(writer, outputs.SubmissionWriter):
                        if not writer.write(name, tp[chunk.start + j][1], chunk.points[j]):
                            missing.append(name)
                    elif chunk.ok[j]:
                        writer.write(name, chunk.points[j], chunk.spread[j] if uncertainty else None,
                                     chunk.sigma[j] if with_sigma else None)
            if n_ok == 0:
                first = errors[0][1] if errors else "no images"
                raise RunError(f"{_where(data)}: none of the {len(paths)} image(s) could be read (first: {first}); "
                               f"{out} left unchanged")
            if not isinstance(writer, outputs.SubmissionWriter):
                writer.close(getattr(pred.models[0], "n_points", 0) or 0)
    except OutputError as e:
        raise RunError(str(e)) from None
    return {"rows": writer.rows, "ok": n_ok, "errors": errors, "missing": missing}


# -------------------------------------------------------------------------------------------- fit

@dataclass
class FitReport:
    """What :func:`fit_tta` found: ``result`` (:class:`~augkit.tta.fit.FitResult`: solo, drop-one,
    cross-validated MSEs and both weightings), ``used`` the better fitted weighting (``per_view`` or
    ``per_landmark``, within ``level``), ``choice`` the merge written (see :func:`fit_tta`), ``cv``
    the cross-validated MSE of every candidate (name -> MSE), the fitted ``spec`` (written to
    ``out`` when given), member names, the counts the report prints, and with ``calibrate``:
    ``sigma_scale`` written (the old one x ``sigma_factor``, fitted on ``sigma_points`` points)."""

    data: str
    n_images: int
    n_models: int
    n_views: int
    member_names: list
    result: object
    level: str
    used: str
    spec: object
    folds: int
    identity_view: int | None
    out: str | None = None
    errors: list = field(default_factory=list)
    choice: str = "per_view"
    cv: dict = field(default_factory=dict)
    sigma_scale: float | None = None
    sigma_factor: float = 1.0
    sigma_points: int = 0


def _candidates(n_models: int, n_views: int, ident, has_sigma: bool) -> list:
    """The parameter-free merges :func:`fit_tta` compares (see :class:`~augkit.tta.fit.Candidate`)."""
    from .fit import Candidate
    out = [Candidate("plain", "mean"), Candidate("robust", "robust")]
    if ident is not None:
        out.insert(0, Candidate("none", "mean", tuple(mi * n_views + ident for mi in range(n_models))))
    if has_sigma:
        out += [Candidate("sigma", "sigma"), Candidate("sigma+robust", "sigma+robust")]
    return out


def _chosen_spec(spec, choice: str, res, ident, n_models: int, names, scale: float, fit_info: dict):
    """The spec :func:`fit_tta` writes for ``choice``: fitted weights, or equal weights under the
    chosen merge, or the identity view alone (``none``)."""
    from dataclasses import replace

    from .views import TTASpec, with_weights
    if choice in ("per_view", "per_landmark"):
        w = res.per_view if choice == "per_view" else res.per_landmark
        out = with_weights(spec, w, models=names, name=f"{spec.name}-fitted")
    elif choice == "none":
        only = TTASpec([replace(spec.views[ident], weight=1.0)], name=spec.name)
        out = with_weights(only, np.full(n_models, 1.0 / n_models), models=names, name=f"{spec.name}-fitted")
    else:
        m = n_models * len(spec.views)
        merge = "mean" if choice == "plain" else choice
        out = with_weights(spec, np.full(m, 1.0 / m), models=names, name=f"{spec.name}-fitted", merge=merge)
    return replace(out, sigma_scale=scale, fit=fit_info, source=None)


def fit_tta(models, data, *, tta="full", level: str = "auto", folds: int = 5, limit=None, out=None, seed: int = 0,
            calibrate: bool = False, compute: Compute | None = None) -> FitReport:
    """Choose and fit the TTA merge on labelled VALIDATION data, streaming; never worse than no TTA.

    One pass: each chunk's member predictions go into the weight fit's sufficient statistics
    (:class:`~augkit.tta.fit.FitAccumulator`) and into the per-fold squared errors of the
    parameter-free merges (:class:`~augkit.tta.fit.MergeAccumulator`), and are dropped. Candidates,
    compared by cross-validated MSE on the same folds: ``none`` (the identity view alone, weight 1;
    when the views have one), ``plain`` (equal weights), the fitted weights ``per_view`` /
    ``per_landmark`` (``level``: ``view``, ``landmark`` or ``auto`` for both; fitted on the other
    folds), ``robust`` and, when every model reports σ, ``sigma`` and ``sigma+robust``. The lowest
    wins; ``none`` is kept unless a candidate is strictly lower, so the written spec is never worse
    than no TTA on these folds. The spec records the choice and the table under ``fit``.

    ``calibrate``: also fit one σ factor, the maximum likelihood of an isotropic 2-D Gaussian error
    of the chosen merge (``s² = mean(|err|² / (2 σ²))``; for fitted weights, of the plain average's
    error and σ: the weights are known only after the pass), and write ``sigma_scale`` = the spec's
    ``sigma_scale`` x ``s``. Needs models that report σ.

    ``out``: write the spec there (YAML, JSON for .json). ``models`` and the other arguments as in
    :func:`predict_to_file`; ``limit`` a random subset.
    """
    c = compute or Compute()
    from dataclasses import replace

    from .fit import FitAccumulator, MergeAccumulator, choose_merge
    from .views import save_spec
    if level not in ("auto", "view", "landmark"):
        raise RunError(f"level must be auto, view or landmark, got {level!r}")
    spec = ins.as_spec(tta)
    if out is not None:
        ins.check_writable_out(out)
    files, truth = ins.read_labelled(data, limit, seed, c.warn)
    run_spec = replace(spec, merge="mean") if spec.needs_sigma else spec   # the fit merges by itself
    pred, _, names = prepare_models(models, run_spec, c.scheme, c.device, c.max_batch, truth, data, check_weights=False)
    if calibrate and not pred.has_sigma:
        from .predictor import model_has_sigma
        i = next(i for i, m in enumerate(pred.models) if not model_has_sigma(m))
        raise RunError(f"--calibrate needs models that report σ, but model {names[i]!r} reports none "
                       "(no has_sigma/call_with_sigma)")
    ident = next((i for i, v in enumerate(spec.views) if not v.pipeline.steps), None)
    acc = FitAccumulator(pred.n_members, truth.shape[1], len(files), per_landmark=level != "view", folds=folds)
    macc = MergeAccumulator(_candidates(len(pred.models), len(spec.views), ident, pred.has_sigma), pred.n_members,
                            truth.shape[1], len(files), folds=folds)
    n_ok, errors = 0, []
    try:
        with progress_callback(c.progress, len(files), "tta fit") as step:
            for chunk in pred.iter_members(files, workers=c.workers, progress=step):
                n_ok += int(chunk.ok.sum())
                errors.extend(chunk.errors)
                if chunk.ok.any():   # unreadable rows are left out by the fit anyway
                    rows = truth[chunk.start:chunk.start + len(chunk)]
                    pos = np.arange(chunk.start, chunk.start + len(chunk))
                    acc.add(chunk.members, rows, pos)
                    macc.add(chunk.members, rows, pos, chunk.member_sigma)
    except ValueError as e:
        raise RunError(ins.last_line(e)) from None
    ins.check_some_readable(n_ok, len(files), errors, data)
    try:
        res = acc.result()
    except ValueError as e:
        raise RunError(f"{data}: {e}") from None
    used = {"view": "per_view", "landmark": "per_landmark", "auto": res.best}[level]
    table = macc.cv()
    for key in {"view": ("per_view",), "landmark": ("per_landmark",), "auto": ("per_view", "per_landmark")}[level]:
        table[key] = float(res.cv[key])
    choice = choose_merge(table)
    scale, factor, n_cal = None, 1.0, 0
    if calibrate:
        factor, n_cal = macc.sigma_scale(choice if choice in table and choice not in ("per_view", "per_landmark")
                                         else "plain")
        if not np.isfinite(factor) or factor <= 0:
            raise RunError(f"{data}: --calibrate: no labelled point with a finite positive σ to fit the scale on")
        scale = spec.sigma_scale * factor
    info = {"merge": choice, "folds": int(folds), "cv_mse": {k: round(float(v), 6) for k, v in table.items()}}
    if scale is not None:
        info["sigma_factor"] = round(float(factor), 6)
    fitted = _chosen_spec(spec, choice, res, ident, len(pred.models), names,
                          spec.sigma_scale if scale is None else scale, info)
    if out is not None:
        try:
            save_spec(fitted, out)
        except OSError as e:
            raise RunError(f"{out}: cannot write: {e}") from None
    return FitReport(os.fspath(data), n_ok, len(pred.models), len(spec.views), pred.member_names, res, level, used,
                     fitted, folds, ident, None if out is None else os.fspath(out), errors, choice, table, scale,
                     factor, n_cal)
