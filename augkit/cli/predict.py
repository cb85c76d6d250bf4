"""``augkit predict``, ``augkit evaluate``, ``augkit tta fit`` and ``augkit export``: parse, call, print.

The work is done by library functions a Python user calls with the same result:
:func:`augkit.tta.predict_to_file`, :func:`augkit.tta.evaluate_tta`, :func:`augkit.tta.fit_tta` and
:func:`augkit.tta.export_onnx` (``predict --onnx`` runs an export's :class:`augkit.tta.OnnxModel`).
Conventions: bad input is one line on stderr and exit 1 (a bad option: exit 2, as click does);
progress is a bar on a terminal and a plain line every 5% (or 30 s) with an ETA otherwise.

Loaded lazily by :mod:`augkit.cli`; importing this module imports neither torch nor the model code
(checkpoints are loaded inside the commands, through :func:`augkit.models.load_model`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import click

from augkit.errors import InputError
from augkit.extras import require_extra
from augkit.run_folder import RunFolder, run_checkpoint, run_spec, validation_labels
from augkit.tta import inputs as ins
from augkit.tta import runners
from augkit.tta.views import PRESET_HELP, TTASpec

from . import Command, Group

_checkpoint = click.option("--checkpoint", "checkpoints", multiple=True, required=False,
                           type=click.Path(exists=True, dir_okay=False),
                           help="Model checkpoint written by `augkit train`; repeat for an ensemble "
                                "(members = models x views).")
_max_batch = click.option("--max-batch", default=64, show_default=True, type=click.IntRange(1, 100000),
                          help="Most model-input images per forward (all views of several images are stacked).")
_device = click.option("--device", default="auto", show_default=True,
                        help="Torch device for the model(s): auto (CUDA when available, else the CPU), cpu, cuda or "
                             "cuda:N (the same default as augkit train).")
_scheme = click.option("--scheme", default=None, help="Landmark scheme (name or file); default: the checkpoint's.")
_runs = click.option("--run", "runs", multiple=True, type=click.Path(exists=True, file_okay=False),
                     help="A run folder of `augkit train`: its best.pt, and its tta.yaml unless --tta is given; "
                          "repeat for an ensemble.")
_workers = click.option("--workers", default=None, type=click.IntRange(0, 256),
                        help="Processes that decode and warp the views while the model runs (0: all in this "
                             "process). Default: the usable cores minus one, at most 8.")


# ------------------------------------------------------------------------------------ helpers

def _warn(line: str) -> None:
    click.echo(line, err=True)


def _given(name: str) -> bool:
    """True when the option was set on the command line (not its default)."""
    ctx = click.get_current_context()
    return ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)


def _compute(scheme, max_batch, workers, device) -> runners.Compute:
    """The shared options of predict / evaluate / tta fit, as the runners take them."""
    from augkit.tta.predictor import default_workers
    return runners.Compute(scheme=scheme, max_batch=max_batch, device=device, progress=True, warn=_warn,
                           workers=default_workers() if workers is None else int(workers))


def _models_and_tta(runs, checkpoints, command: str, tta_name: str, default_what: str):
    """``--run`` folders -> (checkpoints, the first run's fitted TTA or None when ``--tta`` was
    given or no run has one); says in one line which TTA a run gives and why."""
    use_spec = bool(runs) and not _given(tta_name)
    checkpoints, run_tta = _resolve_models(runs, checkpoints, command, _warn, use_spec)
    if not use_spec:
        return checkpoints, None
    if run_tta is None:
        _warn(f"note: --run {runs[0]} has no tta.yaml (write one with `augkit tta fit --run {runs[0]}`): "
              f"{default_what}")
    else:
        what = "fitted views and weights" if run_tta.fitted else "views, with plain weights"
        _warn(f"note: TTA from {run_tta.path} (the run's {what}; --tta overrides it)")
    return checkpoints, run_tta


def _report_errors(errors, shown: int = 10) -> None:
    for _, msg in errors[:shown]:
        _warn(f"skipped unreadable image: {msg}")
    if len(errors) > shown:
        _warn(f"... and {len(errors) - shown} more unreadable image(s)")


# ------------------------------------------------------------------------------------ predict

@click.command(cls=Command)
@_checkpoint
@click.option("--data", required=True, type=click.Path(exists=True),
              help="A folder with test_points.csv (competition test), a folder of images (or with images/), "
                   "or one image.")
@click.option("--tta", "tta", default="none", show_default=True, help=f"Preset or spec file. Presets: {PRESET_HELP}.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output file (.csv or .json with "
              "--format auto).")
@click.option("--format", "fmt", type=click.Choice(["auto", "submission", "csv", "json"]), default="auto",
              show_default=True, help="auto: by the extension of --out: .json gives JSON of all points; .csv "
                                      "gives the submission when --data has test_points.csv, else CSV of all "
                                      "points; another extension needs --format.")
@click.option("--uncertainty", is_flag=True, help="Add each landmark's TTA spread (std of the inverted views, "
                                                  "original pixels; Point_k_S) to the CSV/JSON; with models that "
                                                  "report σ also the merged model σ (original pixels, after the "
                                                  "spec's sigma_scale; Point_k_SIGMA, JSON \"sigma\").")
@click.option("--strict", is_flag=True, help="Fail on the first unreadable image instead of the fallback (submission) "
                                             "or skip (CSV/JSON).")
@_max_batch
@_device
@_scheme
@_workers
@_runs
@click.option("--onnx", "onnx", default=None, type=click.Path(exists=True, dir_okay=False),
              help="A model written by `augkit export`, run through ONNX Runtime (the [onnx] extra) instead of "
                   "--checkpoint/--run, with the TTA of its JSON unless --tta is given; --device auto/cpu/cuda picks "
                   "the ONNX Runtime provider.")
@click.option("--onnx-json", "onnx_json", default=None, type=click.Path(exists=True, dir_okay=False),
              help="The JSON description of --onnx; default: beside it (model.onnx -> model.json).")
def predict(checkpoints, data, tta, out, fmt, uncertainty, strict, max_batch, device, scheme, workers, runs, onnx,
            onnx_json):
    """Predict landmarks with test-time augmentation; write a submission or all points.

    Rows are written as the predictions come back (to a temporary file renamed onto --out at the
    end: a failed run leaves an earlier --out as it was). An unreadable test image still gets a
    submission row: the models' prediction on a mid-grey image of its size (from the file header,
    else the median header size of other listed images), counted and warned; --strict fails
    instead. In CSV/JSON output unreadable images are left out (counted and warned).
    """
    if fmt == "auto":
        try:
            ins.output_format(out, "auto", True)
        except ins.RunError as e:
            raise click.BadParameter(str(e), param_hint="'--out'") from None
    if onnx is not None:
        models, tta = _onnx_model(onnx, onnx_json, checkpoints, runs, tta, device)
        s = runners.predict_to_file(models, data, out, tta=tta, fmt=fmt, uncertainty=uncertainty, strict=strict,
                                    compute=_compute(scheme, max_batch, workers, device))
        _print_predict(s)
        return
    checkpoints, run_tta = _models_and_tta(runs, checkpoints, "augkit predict", "tta",
                                           "predicting with --tta none (no TTA)")
    if run_tta is not None:
        tta = run_tta.spec
    s = runners.predict_to_file(list(checkpoints), data, out, tta=tta, fmt=fmt, uncertainty=uncertainty,
                                strict=strict, checkpoints=list(checkpoints),
                                compute=_compute(scheme, max_batch, workers, device))
    _print_predict(s)


def _onnx_model(onnx, onnx_json, checkpoints, runs, tta, device):
    """``predict --onnx``: ([the ONNX Runtime model], the TTA to use). The export's TTA
    unless --tta is given (without torch the views are warped in this process: see
    :func:`augkit.tta.sources.iter_views`)."""
    from augkit.errors import UsageError
    from augkit.tta.export import load_onnx
    if checkpoints or runs:
        raise UsageError("augkit predict: --onnx replaces --checkpoint and --run; give one model source")
    model, spec = load_onnx(onnx, onnx_json, device=device)
    if not _given("tta"):
        tta = spec
        what = "fitted weights" if spec.weights is not None else f"merge {spec.merge}"
        _warn(f"note: TTA from the export's description: {spec.name} ({len(spec.views)} view(s), {what}; "
              "--tta overrides it)")
    return [model], tta


def _print_predict(s) -> None:
    what = f"{s.rows} rows" if s.fmt == "submission" else f"{s.rows} images"
    click.echo(f"wrote {s.out}: {what} ({s.tta}, {s.members} member(s) per image)")
    if s.errors:
        how = ("got the fallback row (the models' prediction on a mid-grey image of their size)"
               if s.fmt == "submission" else "were left out")
        names = ", ".join(n for n, _ in s.errors[:5]) + (" ..." if len(s.errors) > 5 else "")
        _warn(f"WARNING: {len(s.errors)} of {s.n_images} image(s) could not be read and {how}: {names}")
    if s.missing:
        _warn(f"WARNING: {len(s.missing)} listed image(s) have no finite prediction and are missing from "
              f"the submission: {', '.join(s.missing[:5])}{' ...' if len(s.missing) > 5 else ''}")


# ----------------------------------------------------------------------------------- evaluate

@click.command(cls=Command)
@_checkpoint
@click.option("--data", required=True, type=click.Path(exists=True), help="Labelled dataset (e.g. ytf68/test).")
@click.option("--tta", "ttas", multiple=True, default=("flip",), show_default=True,
              help=f"Setting(s) to compare with no TTA; repeat. Presets: {PRESET_HELP}; or a spec file.")
@click.option("--png", default="worst.png", show_default=True, type=click.Path(dir_okay=False),
              help="Picture of the worst predictions of the best setting.")
@click.option("--n-worst", default=8, show_default=True, type=click.IntRange(0, 64))
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False), help="Also write the table as JSON.")
@click.option("--limit", default=None, type=click.IntRange(1), help="Evaluate a random subset of this many images.")
@click.option("--threshold", default=0.08, show_default=True, type=float, help="NME above which an image fails.")
@click.option("--calibration-png", default=None, type=click.Path(dir_okay=False),
              help="With models that predict a per-landmark sigma: picture of its calibration (reliability and "
                   "coverage curves). Default: calibration.png next to --png.")
@_max_batch
@_device
@_scheme
@_workers
@_runs
def evaluate(checkpoints, data, ttas, png, n_worst, json_out, limit, threshold, calibration_png, max_batch, device,
             scheme, workers, runs):
    """MSE (original pixels), NME and failure rate for no TTA and each TTA setting side by side,
    next to the mean-shape baseline, the Spearman correlation of the TTA spread with the real
    error, and a PNG of the worst cases. With models that predict a per-landmark sigma, also how
    well that sigma is calibrated (coverage at 1 and 2 sigma, its rank correlation with the error,
    the maximum-likelihood scale factor) and a picture of it."""
    from augkit.tta.evaluate import evaluate_tta, report_lines
    checkpoints, run_tta = _models_and_tta(runs, checkpoints, "augkit evaluate", "ttas",
                                           "comparing no TTA with --tta " + " ".join(ttas))
    if run_tta is not None:
        ttas = (run_tta.spec,)
    report = evaluate_tta(list(checkpoints), data, tta=ttas, threshold=threshold, n_worst=n_worst, limit=limit,
                          png=png, json_out=json_out, checkpoints=list(checkpoints), calibration_png=calibration_png,
                          compute=_compute(scheme, max_batch, workers, device))
    _report_errors(report.errors)
    for line in report_lines(report, len(checkpoints)):
        click.echo(line)
    if report.json_path:
        click.echo(f"wrote {report.json_path}")
    if report.png_path:
        click.echo(f"wrote {report.png_path} (worst predictions of {report.png_label})")
    if report.calibration_path:
        click.echo(f"wrote {report.calibration_path} (calibration of the model sigma)")


# ----------------------------------------------------------------------------------------- tta

@click.group(cls=Group)
def tta():
    """Test-time augmentation: fit the merge weights on validation data."""


@tta.command("fit")
@_checkpoint
@click.option("--data", default=None, type=click.Path(exists=True),
              help="Labelled VALIDATION data (never the test set, nor the model's training images); "
                   "default with --run: the run's own validation images.")
@click.option("--tta", "tta_spec", default="full", show_default=True, help=f"Views to weight: preset or spec file. "
              f"Presets: {PRESET_HELP}.")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Spec file to write (YAML, or JSON for .json); default with --run: DIR/tta.yaml.")
@click.option("--run", "run", default=None, type=click.Path(exists=True, file_okay=False),
              help="A run folder of `augkit train`: fit its best.pt on its own validation images (split.json) "
                   "and write DIR/tta.yaml.")
@click.option("--level", type=click.Choice(["auto", "view", "landmark"]), default="auto", show_default=True,
              help="Weights per member, or per member and landmark (shrunk toward the per-member weights); "
                   "auto: whichever has the lower cross-validated MSE.")
@click.option("--folds", default=5, show_default=True, type=click.IntRange(2, 50))
@click.option("--limit", default=None, type=click.IntRange(2), help="Use a random subset of this many images.")
@click.option("--calibrate", is_flag=True, help="Also fit one factor for the models' σ on the validation images "
                                                "(maximum likelihood, isotropic Gaussian error of the chosen merge) "
                                                "and write it as sigma_scale; needs models that report σ.")
@_max_batch
@_device
@_scheme
@_workers
def fit(checkpoints, data, tta_spec, out, run, level, folds, limit, calibrate, max_batch, device, scheme, workers):
    """Choose the merge by cross-validated MSE on validation data and write it into a spec.

    Compared: no TTA (the identity view alone), the plain average, non-negative weights summing to
    one fitted per member (and landmark), the robust merge and, with models that report σ, the
    sigma and sigma+robust merges. The lowest wins; no TTA is kept unless something beats it."""
    from augkit.run_folder import demo_run_reason
    from augkit.tta.fit import fit_report_lines
    if run is not None and data is None:
        reason = demo_run_reason(run)
        if reason:
            raise ins.RunError(reason)
    checkpoints, data, out = _resolve_fit(run, checkpoints, data, out, _warn)
    report = runners.fit_tta(list(checkpoints), data, tta=tta_spec, level=level, folds=folds, limit=limit, out=out,
                             calibrate=calibrate, compute=_compute(scheme, max_batch, workers, device))
    _report_errors(report.errors)
    for line in fit_report_lines(report):
        click.echo(line)


# ------------------------------------------------------------------------------------- export

@click.command(cls=Command)
@click.option("--checkpoint", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Model checkpoint written by `augkit train`.")
@click.option("--run", "run", default=None, type=click.Path(exists=True, file_okay=False),
              help="A run folder of `augkit train`: its best.pt, and its tta.yaml (fitted weights) unless --tta is "
                   "given.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The ONNX file to write (model.onnx).")
@click.option("--json", "json_out", default=None, type=click.Path(dir_okay=False),
              help="The JSON description to write (preprocessing, scheme, TTA views as 2x3 matrices (3x3 when projective) with their "
                   "landmark permutations, merge weights); default: beside --out (model.onnx -> model.json).")
@click.option("--tta", "tta", default="none", show_default=True,
              help=f"The TTA the JSON describes: preset or spec file. Presets: {PRESET_HELP}.")
@click.option("--opset", default=None, type=click.IntRange(7, 30), help="ONNX opset; default: the exporter's.")
def export(checkpoint, run, out, json_out, tta, opset):
    """Export a model to ONNX for any runtime: uint8 (N, H, W, 3) RGB model-input images in (NHWC, the
    normalisation inside the graph, batch axis dynamic), points (N, K, 2) in input-frame pixels out,
    and sigma (N, K) for a head that has it; beside it a JSON description of the preprocessing, the
    scheme and the TTA, so the views and their exact inverses need a few lines of numpy
    (augkit.tta.onnx_spec). `augkit predict --onnx` runs it with the same views and merge.

    Needs the [onnx] extra. Both files are written through temporary files renamed onto them. A
    model with an operator ONNX cannot express fails with one line naming it."""
    from augkit.errors import UsageError
    from augkit.tta.export import export_onnx
    if (checkpoint is None) == (run is None):
        raise UsageError("augkit export: give --checkpoint FILE or --run DIR (one of them)")
    checkpoints, run_tta = _models_and_tta((run,) if run else (), (checkpoint,) if checkpoint else (),
                                           "augkit export", "tta", "exporting with --tta none (no TTA)")
    s = export_onnx(checkpoints[0], out, tta=tta if run_tta is None else run_tta.spec, json_out=json_out,
                    opset=opset)
    outputs = "points and sigma" if s.has_sigma else "points"
    click.echo(f"wrote {s.onnx}: {s.head} head, {s.n_points} points ({outputs})")
    click.echo(f"wrote {s.json}: preprocessing, scheme and TTA {s.tta} ({s.views} view(s), merge {s.merge})")
    if s.max_deviation is None:
        click.echo("not checked in ONNX Runtime (onnxruntime is not installed)")
    else:
        click.echo(f"checked: ONNX Runtime gives PyTorch's outputs within {s.max_deviation:.2g} px on a random batch")


# ------------------------------------------------------------------------------------ --run

@dataclass(frozen=True)
class _RunTTA:
    """A run's ``tta.yaml``, read once: the spec to use and whether its fitted weights are kept
    (they were fitted for this many models)."""

    path: str
    spec: TTASpec
    fitted: bool


def _resolve_models(runs, checkpoints, command: str, warn, use_spec: bool) -> tuple[tuple, _RunTTA | None]:
    """``--run`` for predict / evaluate: (checkpoints with each run's best.pt added, the first run's
    ``tta.yaml`` when ``use_spec`` and a run has one, else None). One spec weights every member.
    Notes go to ``warn``."""
    require_extra("train", command)
    checkpoints = tuple(checkpoints or ()) + tuple(run_checkpoint(r, warn) for r in runs)
    if not checkpoints:
        raise InputError(f"{command}: give --checkpoint FILE or --run DIR (a folder of `augkit train`)")
    path = next((s for s in (run_spec(r) for r in runs) if s), None) if use_spec else None
    return checkpoints, None if path is None else _spec_for(path, len(checkpoints), warn)


def _spec_for(path: str, n_checkpoints: int, warn) -> _RunTTA:
    """A run's ``tta.yaml`` as it is when its weights were fitted for ``n_checkpoints`` models; else
    its views with plain weights (the fitted ones belong to another number of models), with a note."""
    from augkit.tta.views import load_spec
    spec = load_spec(path)
    if spec.weights is None or spec.weights.shape[0] // len(spec.views) == n_checkpoints:
        return _RunTTA(path, spec, True)
    fitted = spec.weights.shape[0] // len(spec.views)
    warn(f"note: {path} was fitted for {fitted} model(s), the ensemble has {n_checkpoints}: its views are "
         "used with plain weights (fit the ensemble's own: augkit tta fit --checkpoint A/best.pt "
         "--checkpoint B/best.pt --data VAL --out ens.yaml)")
    plain = dataclasses.replace(spec, weights=None, models=None,
                                name=f"{spec.name} (views of {os.path.basename(path)})")
    return _RunTTA(path, plain, False)


def _resolve_fit(run, checkpoints, data, out, warn):
    """``tta fit --run DIR``: (checkpoints, validation data, output spec) from the run folder."""
    require_extra("train", "augkit tta fit")
    if run is None:
        if not checkpoints or data is None or out is None:
            raise InputError("augkit tta fit: give --run DIR, or --checkpoint, --data and --out")
        return checkpoints, data, out
    checkpoints = tuple(checkpoints or ()) or (run_checkpoint(run, warn),)
    return checkpoints, data or validation_labels(run), out or RunFolder(run).tta_yaml
