"""``augkit predict``, ``augkit evaluate`` and ``augkit tta fit``.

Loaded lazily by ``augkit.cli``; importing this module imports neither torch nor the model code
(checkpoints are loaded inside the commands, through ``augkit.train.checkpoint.load_model``).
"""

from __future__ import annotations

import json
import os
import sys

import click

from .views import PRESET_HELP

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm")

_checkpoint = click.option("--checkpoint", "checkpoints", multiple=True, required=False,
                           type=click.Path(exists=True, dir_okay=False),
                           help="Model checkpoint written by `augkit train`; repeat for an ensemble "
                                "(members = models x views).")
_max_batch = click.option("--max-batch", default=64, show_default=True, type=click.IntRange(1, 100000),
                          help="Most model-input images per forward (all views of several images are stacked).")
_device = click.option("--device", default="cpu", show_default=True, help="Torch device for the model(s).")
_scheme = click.option("--scheme", default=None, help="Landmark scheme (name or file); default: the checkpoint's.")
_runs = click.option("--run", "runs", multiple=True, type=click.Path(exists=True, file_okay=False),
                     help="A run folder of `augkit train`: its best.pt, and its tta.yaml unless --tta is given; "
                          "repeat for an ensemble.")


def _given(name: str) -> bool:
    """True when the option was set on the command line (not its default)."""
    ctx = click.get_current_context()
    return ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)


# ------------------------------------------------------------------------------------ helpers

def load_models(paths, device: str = "cpu") -> list:
    """Checkpoints -> ``LandmarkModel`` callables (``augkit.train.checkpoint.load_model``)."""
    try:
        from augkit.train.checkpoint import load_model
    except ImportError as e:
        raise click.ClickException(f"cannot load checkpoints: augkit.train is not available ({e})") from None
    models = []
    short = [os.path.basename(p) for p in paths]
    for p, name in zip(paths, short if len(set(short)) == len(short) else paths):
        try:
            m = load_model(p, device=device)
        except Exception as e:  # a bad checkpoint: say which
            raise click.ClickException(f"{p}: cannot load the checkpoint: {e}") from None
        try:
            m.name = name   # member names in tables: <checkpoint>/<view>
        except AttributeError:
            pass
        models.append(m)
    return models


def _spec(tta):
    from .views import SpecError, get_spec
    try:
        return get_spec(tta)
    except SpecError as e:
        raise click.ClickException(str(e)) from None


def _progress(total: int, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None, lambda: None
    bar = tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=None, leave=False)
    return bar.update, bar.close


def resolve_inputs(data):
    """``(paths, names, test_points or None)`` for ``--data``: a folder with ``test_points.csv``
    (competition test: images listed there, in its order), a folder of images (or with
    ``images/``), or one image file."""
    data = os.fspath(data)
    if os.path.isfile(data):
        if os.path.basename(data) == "test_points.csv":
            folder = os.path.dirname(os.path.abspath(data))
        else:
            return [os.path.abspath(data)], [os.path.basename(data)], None
    else:
        folder = data
    if not os.path.isdir(folder):
        raise click.ClickException(f"{data}: no such file or folder")
    root = os.path.join(folder, "images") if os.path.isdir(os.path.join(folder, "images")) else folder
    tp_path = os.path.join(folder, "test_points.csv")
    if os.path.isfile(tp_path):
        from augkit.train.readers import DatasetError, read_test_points
        try:
            tp = read_test_points(tp_path)
        except DatasetError as e:
            raise click.ClickException(str(e)) from None
        names = [n for n, _ in tp]
        return [os.path.abspath(os.path.join(root, n)) for n in names], names, tp
    names = sorted(f for f in os.listdir(root) if f.lower().endswith(IMAGE_EXTENSIONS)
                   and os.path.isfile(os.path.join(root, f)))
    if not names:
        raise click.ClickException(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return [os.path.abspath(os.path.join(root, n)) for n in names], names, None


def _read_labelled(data, limit=None, seed=0):
    from augkit.train.readers import DatasetError, read_dataset
    try:
        table = read_dataset(data)
    except (DatasetError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from None
    if table.skipped:
        click.echo(f"{data}: {len(table.skipped)} row(s) skipped, first: {table.skipped[0]['reason']}", err=True)
    files, points = list(table.files), table.points
    if limit and limit < len(files):
        import numpy as np
        pick = np.sort(np.random.default_rng(seed).choice(len(files), limit, replace=False))
        files, points = [files[i] for i in pick], points[pick]
    return files, points


def _report_errors(errors):
    for name, msg in errors:
        click.echo(f"skipped unreadable image: {msg}", err=True)
    if errors:
        click.echo(f"{len(errors)} image(s) could not be read and were skipped", err=True)


def _check_n_points(models, scheme):
    ks = {getattr(m, "n_points", None) for m in models} - {None}
    if len(ks) > 1:
        raise click.ClickException(f"the checkpoints predict different numbers of points: {sorted(ks)}")


def _predictor(models, tta, scheme, max_batch):
    from .predictor import TTAPredictor
    try:
        return TTAPredictor(models, _spec(tta), scheme=scheme, max_batch=max_batch)
    except ValueError as e:
        raise click.ClickException(str(e)) from None


def _check_weights(spec, checkpoints):
    if spec.weights is None:
        return
    n = spec.weights.shape[0] // len(spec.views)
    if n != len(checkpoints):
        raise click.ClickException(f"{spec.source}: weights: fitted for {n} checkpoint(s) {spec.models or ''}, "
                                   f"but {len(checkpoints)} were given")
    if spec.models and [os.path.basename(m) for m in spec.models] != [os.path.basename(c) for c in checkpoints]:
        click.echo(f"note: {spec.source}: weights were fitted for {spec.models}, used with "
                   f"{list(checkpoints)} (same order assumed)", err=True)


# ------------------------------------------------------------------------------------ predict

@click.command()
@_checkpoint
@click.option("--data", required=True, type=click.Path(exists=True),
              help="A folder with test_points.csv (competition test), a folder of images (or with images/), "
                   "or one image.")
@click.option("--tta", "tta", default="none", show_default=True, help=f"Preset or spec file. Presets: {PRESET_HELP}.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output file.")
@click.option("--format", "fmt", type=click.Choice(["auto", "submission", "csv", "json"]), default="auto",
              show_default=True, help="auto: the submission when --data has test_points.csv and --out is "
                                      ".csv; JSON for .json; else CSV of all points.")
@click.option("--uncertainty", is_flag=True, help="Add each landmark's TTA spread (std of the inverted views, "
                                                  "original pixels) to the CSV/JSON.")
@_max_batch
@_device
@_scheme
@_runs
def predict(checkpoints, data, tta, out, fmt, uncertainty, max_batch, device, scheme, runs):
    """Predict landmarks with test-time augmentation; write a submission or all points."""
    from .run_folder import resolve_models
    checkpoints, tta = resolve_models(runs, checkpoints, tta, _given("tta"), "augkit predict")
    paths, names, tp = resolve_inputs(data)
    if fmt == "auto":
        fmt = "json" if out.lower().endswith(".json") else ("submission" if tp is not None else "csv")
    if fmt == "submission" and tp is None:
        raise click.ClickException(f"--format submission needs a test_points.csv in {data}")
    if fmt == "submission" and uncertainty:
        raise click.ClickException("--uncertainty goes with --format csv or json (the submission has no room for it)")
    spec = _spec(tta)
    _check_weights(spec, checkpoints)
    models = load_models(checkpoints, device)
    _check_n_points(models, scheme)
    pred = _predictor(models, spec, scheme, max_batch)
    step, close = _progress(len(paths), "predict")
    try:
        res = pred.predict(paths, names=names, progress=step)
    finally:
        close()
    _report_errors(res.errors)
    from . import outputs
    ok = res.ok
    if fmt == "submission":
        preds = {n: res.points[i] for i, n in enumerate(names) if ok[i]}
        missing = outputs.write_submission(out, tp, preds)
        click.echo(f"wrote {out}: {len(tp) - len(missing)} rows ({pred.spec.name}, {len(pred.member_names)} "
                   f"member(s) per image)")
        if missing:
            click.echo(f"WARNING: {len(missing)} listed image(s) have no prediction and are missing from the "
                       f"submission: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}", err=True)
    else:
        keep = [i for i in range(len(names)) if ok[i]]
        outputs.write_points(out, [names[i] for i in keep], res.points[keep],
                             res.spread[keep] if uncertainty else None, fmt)
        click.echo(f"wrote {out}: {len(keep)} images ({pred.spec.name}, {len(pred.member_names)} member(s))")


# ----------------------------------------------------------------------------------- evaluate

@click.command()
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
@_max_batch
@_device
@_scheme
@_runs
def evaluate(checkpoints, data, ttas, png, n_worst, json_out, limit, threshold, max_batch, device, scheme, runs):
    """MSE (original pixels), NME and failure rate for no TTA and each TTA setting side by side,
    the Spearman correlation of the TTA spread with the real error, and a PNG of the worst cases."""
    from augkit import metrics

    from .evaluate import evaluate_settings, worst_png
    from .run_folder import resolve_models
    checkpoints, ttas = resolve_models(runs, checkpoints, ttas, _given("ttas"), "augkit evaluate")
    files, truth = _read_labelled(data, limit)
    settings = [("none", "none")] + [(t, _spec(t)) for t in ttas if t != "none"]
    for _, s in settings[1:]:
        _check_weights(s, checkpoints)
    models = load_models(checkpoints, device)
    _check_n_points(models, scheme)
    step, close = _progress(len(files), "evaluate")
    try:
        results, members = evaluate_settings(models, settings, files, truth, scheme=scheme, max_batch=max_batch,
                                             progress=step)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    finally:
        close()
    _report_errors(members.errors)
    sch = _predictor(models, "none", scheme, 1).scheme
    rows = []
    click.echo(f"{data}: {int(members.ok.sum())} images, {len(checkpoints)} model(s)")
    click.echo(f"{'setting':<22}{'members':>8}{'MSE':>10}{'NME':>9}{'FR@' + format(threshold, 'g'):>9}"
               f"{'rho_pt':>8}{'rho_img':>8}")
    for r in results:
        m = r.metrics
        fr = metrics.failure_rate(r.points[members.ok], truth[members.ok], sch, threshold)
        click.echo(f"{os.path.basename(r.label)[:21]:<22}{m['members']:>8}{m['mse']:>10.3f}{m['nme']:>9.4f}"
                   f"{fr:>9.3f}{_f(m['rho_point']):>8}{_f(m['rho_image']):>8}")
        rows.append({"setting": r.label, **{k: (None if v != v else v) for k, v in m.items()}, "fr": fr})
    click.echo("rho_pt: Spearman(spread, point error) over all points; rho_img: Spearman(mean spread, NME) "
               "over images")
    if json_out:
        from augkit.config import atomic_write_text
        atomic_write_text(json_out, json.dumps({"data": os.fspath(data), "checkpoints": list(checkpoints),
                                                "results": rows}, indent=1) + "\n")
        click.echo(f"wrote {json_out}")
    if n_worst and png:
        best = min(results, key=lambda r: r.metrics["mse"])
        label = os.path.basename(best.label)
        worst_png(png, files, truth, best.points, best.spread, sch, n_worst,
                  f"worst {n_worst} of {label} (green truth, red prediction, yellow circle: TTA spread)")
        click.echo(f"wrote {png} (worst predictions of {label})")


def _f(x) -> str:
    return "n/a" if x is None or x != x else f"{x:.3f}"


# ----------------------------------------------------------------------------------------- tta

@click.group()
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
@_max_batch
@_device
@_scheme
def fit(checkpoints, data, tta_spec, out, run, level, folds, limit, max_batch, device, scheme):
    """Fit non-negative merge weights summing to one on validation data and write them into a spec."""
    from .fit import fit_weights
    from .run_folder import resolve_fit
    from .views import save_spec, with_weights
    checkpoints, data, out = resolve_fit(run, checkpoints, data, out)
    spec = _spec(tta_spec)
    files, truth = _read_labelled(data, limit)
    models = load_models(checkpoints, device)
    _check_n_points(models, scheme)
    pred = _predictor(models, spec, scheme, max_batch)
    step, close = _progress(len(files), "tta fit")
    try:
        members = pred.predict_members(files, progress=step)
    finally:
        close()
    _report_errors(members.errors)
    try:
        res = fit_weights(members.points, truth, per_landmark=level != "view", folds=folds)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    names = pred.member_names
    click.echo(f"{data}: {int(members.ok.sum())} validation images, {len(names)} members "
               f"({len(models)} model(s) x {len(spec.views)} views); MSE in original pixels")
    click.echo(f"{'member':<34}{'alone':>10}{'gain':>10}{'weight':>9}")
    for i, n in enumerate(names):
        click.echo(f"{n[:33]:<34}{res.solo[i]:>10.3f}{res.drop_one[i]:>+10.3f}{res.per_view[i]:>9.3f}")
    click.echo("(alone: the member's own MSE; gain: how much the plain average's MSE rises without it)")
    ident = [i for i, v in enumerate(spec.views) if not v.pipeline.steps]
    cv = res.cv
    click.echo(f"{folds}-fold cross-validated MSE:")
    if ident:
        click.echo(f"  no TTA (identity view)       {res.solo[ident[0]]:10.3f}   (nothing fitted)")
    click.echo(f"  plain average                {cv['plain']:10.3f}")
    click.echo(f"  fitted per member            {cv['per_view']:10.3f}   ({_pct(cv['per_view'], cv['plain'])} vs plain)")
    if level != "view":
        click.echo(f"  fitted per member x landmark {cv['per_landmark']:10.3f}   "
                   f"({_pct(cv['per_landmark'], cv['plain'])} vs plain; shrinkage lambda={res.lam:g})")
    use = {"view": "per_view", "landmark": "per_landmark", "auto": res.best}[level]
    weights = res.per_view if use == "per_view" else res.per_landmark
    fitted = with_weights(spec, weights, models=[os.path.basename(c) for c in checkpoints],
                          name=f"{spec.name}-fitted")
    try:
        save_spec(fitted, out)
    except OSError as e:
        raise click.ClickException(f"{out}: cannot write: {e}") from None
    click.echo(f"wrote {out} ({use.replace('_', '-')} weights, {weights.shape[0]} members"
               f"{'' if weights.ndim == 1 else ' x ' + str(weights.shape[1]) + ' landmarks'})")


def _pct(a, b) -> str:
    return f"{100.0 * (a - b) / b:+.1f}%" if b else "n/a"
