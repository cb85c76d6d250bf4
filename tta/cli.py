"""``augkit predict``, ``augkit evaluate`` and ``augkit tta fit``.

Loaded lazily by ``augkit.cli``; importing this module imports neither torch nor the model code
(checkpoints are loaded inside the commands, through ``augkit.train.checkpoint.load_model``).
"""

from __future__ import annotations

import json
import os
import sys

import click
import numpy as np

from augkit.io import IMAGE_EXTENSIONS

from .views import PRESET_HELP

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
_workers = click.option("--workers", default=None, type=click.IntRange(0, 256),
                        help="Processes that decode and warp the views while the model runs (0: all in this "
                             "process). Default: the usable cores minus one, at most 8.")


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
    del table
    if limit and limit < len(files):
        pick = np.sort(np.random.default_rng(seed).choice(len(files), limit, replace=False))
        files, points = [files[i] for i in pick], points[pick]
    # labels held for the whole pass in float32 (the readers' own dtype at scale); chunks are
    # taken to float64 where the metrics and the fit sum them
    return files, np.asarray(points, dtype=np.float32)


def _report_errors(errors, shown: int = 10):
    for name, msg in errors[:shown]:
        click.echo(f"skipped unreadable image: {msg}", err=True)
    if len(errors) > shown:
        click.echo(f"... and {len(errors) - shown} more unreadable image(s)", err=True)


def _n_points(models) -> int | None:
    """The models' point count K (None when a model does not say)."""
    ks = {getattr(m, "n_points", None) for m in models} - {None}
    if len(ks) > 1:
        raise click.ClickException(f"the checkpoints predict different numbers of points: {sorted(ks)}")
    return ks.pop() if ks else None


def _check_n_points(models, scheme) -> int | None:
    """K of the models; a ``--scheme`` with another point count is refused before any compute."""
    k = _n_points(models)
    if scheme is not None and k is not None:
        from augkit.schemes import get_scheme
        try:
            sch = get_scheme(scheme)
        except (ValueError, FileNotFoundError, KeyError) as e:
            raise click.ClickException(f"--scheme {scheme}: {e}") from None
        if sch.n_points != k:
            raise click.ClickException(f"--scheme {scheme}: the scheme has {sch.n_points} points, the checkpoint(s) "
                                       f"predict {k}")
    return k


def _check_merge_weights(spec, n_models: int, k: int | None) -> None:
    """Refuse, before compute, a spec whose weights cannot merge (all zero, wrong member count)."""
    if spec.merge != "mean":
        return
    from .views import SpecError
    if k is None:
        k = spec.weights.shape[1] if spec.weights is not None and spec.weights.ndim == 2 else 1
    try:
        spec.member_weights(n_models, k)
    except SpecError as e:
        where = spec.source or f"--tta {spec.name}"
        msg = str(e)
        if "all weights of a landmark are zero" in msg and spec.weights is None:
            msg = f"{where}: views[*].weight: all view weights are zero; at least one must be positive"
        raise click.ClickException(msg) from None


def _check_out(path) -> None:
    """Fail before compute when ``path`` cannot be written (the message names ``path``)."""
    from augkit.config import OutputError, check_writable
    try:
        check_writable(path)
    except OutputError as e:
        raise click.ClickException(str(e)) from None


def _workers_or_default(workers):
    from .predictor import default_workers
    return default_workers() if workers is None else int(workers)


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
@click.option("--strict", is_flag=True, help="Fail on the first unreadable image instead of the fallback (submission) "
                                             "or skip (CSV/JSON).")
@_max_batch
@_device
@_scheme
@_workers
@_runs
def predict(checkpoints, data, tta, out, fmt, uncertainty, strict, max_batch, device, scheme, workers, runs):
    """Predict landmarks with test-time augmentation; write a submission or all points.

    Rows are written as the predictions come back (to a temporary file renamed onto --out at the
    end: a failed run leaves an earlier --out as it was). An unreadable test image still gets a
    submission row: the models' prediction on a mid-grey image of its size (from the file header,
    else the median header size of other listed images), counted and warned; --strict fails
    instead. In CSV/JSON output unreadable images are left out (counted and warned).
    """
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
    _check_out(out)
    if not any(os.path.exists(p) for p in paths):
        raise click.ClickException(f"{data}: none of the {len(paths)} listed image(s) exists (first: {paths[0]}); "
                                   f"{out} left unchanged")
    models = load_models(checkpoints, device)
    k = _check_n_points(models, scheme)
    _check_merge_weights(spec, len(models), k)
    if tp is not None and k is not None:
        from .outputs import check_test_points
        try:
            check_test_points(tp, k, _test_points_path(data))
        except ValueError as e:
            raise click.ClickException(str(e)) from None
    pred = _predictor(models, spec, scheme, max_batch)
    step, close = _progress(len(paths), "predict")
    try:
        counts = _stream_predictions(pred, paths, names, tp, fmt, out, uncertainty, strict,
                                     _workers_or_default(workers), step, data)
    except ValueError as e:   # a view or model that gives the wrong shape: one line, --out untouched
        raise click.ClickException(_last_line(e)) from None
    finally:
        close()
    what = f"{counts['rows']} rows" if fmt == "submission" else f"{counts['rows']} images"
    click.echo(f"wrote {out}: {what} ({pred.spec.name}, {len(pred.member_names)} member(s) per image)")
    if counts["errors"]:
        how = ("got the fallback row (the models' prediction on a mid-grey image of their size)"
               if fmt == "submission" else "were left out")
        names_ = ", ".join(n for n, _ in counts["errors"][:5]) + (" ..." if len(counts["errors"]) > 5 else "")
        click.echo(f"WARNING: {len(counts['errors'])} of {len(paths)} image(s) could not be read and {how}: "
                   f"{names_}", err=True)
    if counts["missing"]:
        click.echo(f"WARNING: {len(counts['missing'])} listed image(s) have no finite prediction and are missing from "
                   f"the submission: {', '.join(counts['missing'][:5])}{' ...' if len(counts['missing']) > 5 else ''}",
                   err=True)


def _last_line(e: Exception) -> str:
    """The message of an error, without the traceback text a DataLoader worker wraps around it."""
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


def _test_points_path(data) -> str:
    data = os.fspath(data)
    return data if os.path.isfile(data) else os.path.join(data, "test_points.csv")


def _stream_predictions(pred, paths, names, tp, fmt, out, uncertainty, strict, workers, progress, data) -> dict:
    """Predict chunk by chunk and write each chunk's rows at once, inside ``atomic_open(out)``.

    Returns ``{"rows", "ok", "errors"}``. Raises ``ClickException`` (the temporary file removed,
    ``out`` untouched) on the first unreadable image with ``strict``, or when no image was readable.
    """
    from augkit.config import OutputError, atomic_open

    from . import outputs
    submission = fmt == "submission"
    n_ok, errors, missing = 0, [], []
    try:
        with atomic_open(out, "w", newline="") as f:
            if submission:
                writer = outputs.SubmissionWriter(f, max((len(i) for _, i in tp), default=0))
            else:
                writer = outputs.points_writer(f, fmt, uncertainty)
            chunks = pred.iter_predict(paths, names, workers=workers, progress=progress,
                                       fallback="grey" if submission and not strict else None)
            for chunk in chunks:
                if chunk.errors and strict:
                    j = int(np.flatnonzero(~chunk.ok)[0])
                    where = (f"{_test_points_path(data)}: line {chunk.start + j + 2}: " if tp is not None
                             else f"image {chunk.start + j + 1} of {len(paths)}: ")
                    raise click.ClickException(f"{where}{chunk.errors[0][1]} (--strict; {out} left unchanged)")
                errors.extend(chunk.errors)
                n_ok += int(chunk.ok.sum())
                for j, name in enumerate(chunk.names):
                    pos = chunk.start + j
                    if submission:
                        if not writer.write(name, tp[pos][1], chunk.points[j]):
                            missing.append(name)
                    elif chunk.ok[j]:
                        writer.write(name, chunk.points[j], chunk.spread[j] if uncertainty else None)
            if n_ok == 0:
                first = errors[0][1] if errors else "no images"
                raise click.ClickException(f"{data}: none of the {len(paths)} image(s) could be read (first: {first}); "
                                           f"{out} left unchanged")
            if not submission:
                writer.close(getattr(pred.models[0], "n_points", 0) or 0)
    except OutputError as e:
        raise click.ClickException(str(e)) from None
    return {"rows": writer.rows, "ok": n_ok, "errors": errors, "missing": missing}


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
@_workers
@_runs
def evaluate(checkpoints, data, ttas, png, n_worst, json_out, limit, threshold, max_batch, device, scheme, workers,
             runs):
    """MSE (original pixels), NME and failure rate for no TTA and each TTA setting side by side,
    the Spearman correlation of the TTA spread with the real error, and a PNG of the worst cases."""
    from .run_folder import resolve_models
    checkpoints, ttas = resolve_models(runs, checkpoints, ttas, _given("ttas"), "augkit evaluate")
    files, truth = _read_labelled(data, limit)
    settings = [("none", _spec("none"))] + [(t if isinstance(t, str) else t.name, _spec(t))
                                            for t in ttas if t != "none"]
    for _, s in settings[1:]:
        _check_weights(s, checkpoints)
    for path in (json_out, png if n_worst else None):
        if path:
            _check_out(path)
    models = load_models(checkpoints, device)
    k = _check_n_points(models, scheme)
    _check_labels_match(k, truth, data)
    for _, s in settings[1:]:
        _check_merge_weights(s, len(models), k)
    step, close = _progress(len(files), "evaluate")
    try:
        results, n_ok, errors = _stream_evaluate(models, [s for _, s in settings], files, truth, scheme,
                                                       max_batch, _workers_or_default(workers), threshold,
                                                       n_worst, step)
    except ValueError as e:
        raise click.ClickException(_last_line(e)) from None
    finally:
        close()
    _report_errors(errors)
    _check_some_readable(n_ok, len(files), errors, data)
    rows, table = [], []
    click.echo(f"{data}: {n_ok} images, {len(checkpoints)} model(s)")
    for (label, _), m in zip(settings, results):
        table.append([os.path.basename(label), str(m["members"]), f"{m['mse']:.3f}", f"{m['nme']:.4f}",
                      f"{m['fr']:.3f}", _f(m["rho_point"]), _f(m["rho_image"])])
        rows.append({"setting": label, **{key: (None if v != v else v) for key, v in m.items() if key != "worst"}})
    header = ["setting", "members", "MSE", "NME", "FR@" + format(threshold, "g"), "rho_pt", "rho_img"]
    for line in format_table(header, table):
        click.echo(line)
    click.echo("rho_pt: Spearman(spread, point error) over all points; rho_img: Spearman(mean spread, NME) "
               "over images")
    for line in part_table([os.path.basename(label) for label, _ in settings], results):
        click.echo(line)
    if json_out:
        from augkit.config import atomic_write_text
        atomic_write_text(json_out, json.dumps({"data": os.fspath(data), "checkpoints": list(checkpoints),
                                                "results": rows}, indent=1) + "\n")
        click.echo(f"wrote {json_out}")
    if n_worst and png:
        b = min(range(len(results)), key=lambda i: results[i]["mse"])
        label = os.path.basename(settings[b][0])
        _worst_png(png, models, settings[b][1], scheme, files, truth, results[b]["worst"], n_worst, label)
        click.echo(f"wrote {png} (worst predictions of {label})")


def _stream_evaluate(models, specs, files, truth, scheme, max_batch, workers, threshold, n_worst, progress):
    """One streamed pass over the union of the settings' views, each chunk merged per setting and
    added to that setting's ``EvalAccumulator``. Returns ``(metrics per setting, readable images,
    errors)``."""
    from .evaluate import EvalAccumulator, union_views
    from .predictor import TTAPredictor, merge_members
    from .views import TTASpec
    union, idx = union_views(specs, len(models))
    pred = TTAPredictor(models, TTASpec(union, name="union"), scheme=scheme, max_batch=max_batch)
    accs = [EvalAccumulator(truth.shape[1], pred.scheme, n_worst=max(n_worst, 1), threshold=threshold)
            for _ in specs]
    n_ok, errors = 0, []
    for chunk in pred.iter_members(files, workers=workers, progress=progress):
        pos = np.arange(chunk.start, chunk.start + len(chunk))
        t = truth[chunk.start:chunk.start + len(chunk)]
        n_ok += int(chunk.ok.sum())
        errors.extend(chunk.errors)
        if not chunk.ok.any():   # nothing to add (and the metrics count readable images only)
            continue
        for acc, spec, ix in zip(accs, specs, idx):
            pts, spr = merge_members(chunk.members[:, ix], spec, len(models))
            acc.add(pts, spr, t, pos)
    if n_ok == 0:
        return [], 0, errors
    results = []
    for acc, ix in zip(accs, idx):
        m = acc.result()
        m["members"] = len(ix)
        results.append(m)
    return results, n_ok, errors


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


def part_table(labels: list, results: list) -> list:
    """Lines of the per-part table (MSE / NME of each part under each setting), none without parts."""
    names = list(results[0].get("parts") or {}) if results else []
    if not names:
        return []
    rows = [[name] + [f"{r['parts'][name]['mse']:.3f} / {r['parts'][name]['nme']:.4f}" for r in results]
            for name in names]
    return ["per part, MSE / NME:"] + format_table(["part"] + labels, rows)


def format_table(header: list, rows: list, gap: int = 2) -> list:
    """Lines of a text table: the first column left-aligned, the others right-aligned, every
    column as wide as its widest cell (header included) plus ``gap``."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = []
    for cells in [header] + rows:
        first = f"{cells[0]:<{widths[0]}}"
        lines.append(first + "".join(f"{c:>{w + gap}}" for c, w in zip(cells[1:], widths[1:])))
    return lines


def _check_labels_match(k, truth, data) -> None:
    """The models' K must equal the labels' point count (checked before any compute)."""
    if k is not None and truth.shape[1] != k:
        raise click.ClickException(f"{data}: the labels have {truth.shape[1]} points per image, the checkpoint(s) "
                                   f"predict {k}: evaluate and fit need a model of the same landmark layout")


def _check_some_readable(n_ok: int, n: int, errors, data) -> None:
    if n_ok == 0:
        first = errors[0][1] if errors else "no images"
        raise click.ClickException(f"{data}: none of the {n} labelled image(s) could be read (first: {first})")


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
@_workers
def fit(checkpoints, data, tta_spec, out, run, level, folds, limit, max_batch, device, scheme, workers):
    """Fit non-negative merge weights summing to one on validation data and write them into a spec."""
    from .fit import FitAccumulator
    from .run_folder import resolve_fit
    from .views import save_spec, with_weights
    checkpoints, data, out = resolve_fit(run, checkpoints, data, out)
    spec = _spec(tta_spec)
    _check_out(out)
    files, truth = _read_labelled(data, limit)
    models = load_models(checkpoints, device)
    k = _check_n_points(models, scheme)
    _check_labels_match(k, truth, data)
    pred = _predictor(models, spec, scheme, max_batch)
    acc = FitAccumulator(pred.n_members, truth.shape[1], len(files), per_landmark=level != "view", folds=folds)
    n_ok, errors = 0, []
    step, close = _progress(len(files), "tta fit")
    try:   # one streamed pass: each chunk's members go into the fit's sufficient statistics, then are dropped
        for chunk in pred.iter_members(files, workers=_workers_or_default(workers), progress=step):
            n_ok += int(chunk.ok.sum())
            errors.extend(chunk.errors)
            if chunk.ok.any():   # unreadable rows are left out by the fit anyway
                acc.add(chunk.members, truth[chunk.start:chunk.start + len(chunk)],
                        np.arange(chunk.start, chunk.start + len(chunk)))
    except ValueError as e:
        raise click.ClickException(_last_line(e)) from None
    finally:
        close()
    _report_errors(errors)
    _check_some_readable(n_ok, len(files), errors, data)
    try:
        res = acc.result()
    except ValueError as e:
        raise click.ClickException(f"{data}: {e}") from None
    names = pred.member_names
    click.echo(f"{data}: {n_ok} validation images, {len(names)} members "
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
