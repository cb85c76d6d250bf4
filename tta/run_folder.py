"""``--run DIR`` for ``augkit predict``, ``augkit evaluate`` and ``augkit tta fit``: a training run
folder (:class:`augkit.data.run_folder.RunFolder`) is the hand-off. It gives the checkpoint (its
one rule: ``best.pt``, else ``last.pt``), the fitted TTA spec (``tta.yaml``, written by
``tta fit --run``) and, from ``split.json``, the run's own validation images (the images the model
did not train on), written once as ``val.csv``."""

from __future__ import annotations

import csv
import os

import click

from augkit.data.run_folder import RunFolder, RunFolderError
from augkit.extras import command_requires

__all__ = [
    "require_train_extra",
    "resolve_fit",
    "resolve_models",
    "run_checkpoint",
    "run_spec",
    "validation_labels",
]

SPEC_NAME = RunFolder.TTA_NAME


def require_train_extra(command: str) -> None:
    """A click error naming the extra when torch & co. are missing."""
    command_requires("train", command)


def _folder(run: str) -> RunFolder:
    folder = RunFolder(run)
    if not os.path.isdir(folder.path):
        raise click.ClickException(f"--run {folder.path}: no such folder (a run folder written by `augkit train`)")
    return folder


def run_checkpoint(run: str) -> str:
    """The run's checkpoint for inference (:meth:`RunFolder.checkpoint`: ``best.pt``, else ``last.pt``).
    Without ``best.pt`` a line on stderr says that ``last.pt`` is used, and why there is no best."""
    folder = _folder(run)
    path = folder.checkpoint()
    if path is None:
        raise click.ClickException(f"--run {folder.path}: no {folder.BEST_NAME} nor {folder.LAST_NAME} there "
                                   "(did `augkit train` finish an epoch?)")
    if path == folder.last_pt:
        click.echo(f"--run {folder.path}: using {folder.LAST_NAME}: {_why_no_best(folder)}", err=True)
    return path


def _why_no_best(folder: RunFolder) -> str:
    try:
        validates = float(folder.read_config().get("val_fraction", 0.1) or 0) > 0
    except (OSError, ValueError, RunFolderError, AttributeError):
        validates = True
    if not validates:
        return "the run holds out no validation images (--val-fraction 0), so its last state is its model"
    return (f"no epoch has been validated yet, so there is no {folder.BEST_NAME}: {folder.LAST_NAME} is the latest "
            "training state, not a validated best (the run was stopped before its first validation, or is still "
            "in it); `augkit train --resume` it to finish")


def run_spec(run: str) -> str | None:
    """``DIR/tta.yaml`` when the run has a fitted TTA spec."""
    folder = _folder(run)
    return folder.tta_yaml if folder.has(folder.TTA_NAME) else None


def validation_labels(run: str) -> str:
    """The run's validation images with their landmarks as a CSV (``DIR/val.csv``: absolute image
    paths, then x0, y0, x1, y1, ...), written row by row from ``split.json`` and the run's dataset."""
    folder = _folder(run)
    run = folder.path
    split = _read_split(folder)
    from augkit.data import DatasetError, read_dataset
    from augkit.files import atomic_open
    try:
        table = read_dataset(split["data"], format=split.get("format"))
    except (DatasetError, OSError, ValueError) as e:
        raise click.ClickException(f"--run {run}: the run's data cannot be read any more: {e}") from None
    wanted = set(split["val"])
    rows = [i for i, f in enumerate(table.files) if os.path.relpath(f, split["root"]) in wanted]
    if not rows:
        raise click.ClickException(f"--run {run}: none of the {len(wanted)} validation images of "
                                   f"{folder.SPLIT_NAME} are in {split['data']} any more")
    path = folder.val_csv
    try:
        with atomic_open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file"] + [f"{a}{i}" for i in range(table.n_points) for a in "xy"])
            for i in rows:
                w.writerow([table.files[i]] + [f"{v:.4f}" for v in table.points[i].reshape(-1).tolist()])
    except OSError as e:
        raise click.ClickException(str(e)) from None
    return path


def _read_split(folder: RunFolder) -> dict:
    run = folder.path
    if not folder.has(folder.SPLIT_NAME):
        raise click.ClickException(f"--run {run}: no {folder.SPLIT_NAME} (written by `augkit train` from this "
                                   "version on)")
    try:
        split = folder.read_split()
    except (OSError, RunFolderError) as e:
        raise click.ClickException(str(e)) from None
    if split.get("data") is None:
        raise click.ClickException(f"--run {run}: the run trained on the synthetic demo faces; pass --data with "
                                   "labelled validation images instead")
    if not split.get("val"):
        raise click.ClickException(f"--run {run}: the run held out no validation images (--val-fraction 0)")
    if "root" not in split:
        raise click.ClickException(f"{folder.split_json}: not a split file of `augkit train` (no 'root': the "
                                   "folder the image names are relative to)")
    return split


def resolve_models(runs, checkpoints, tta, tta_given: bool, command: str):
    """``--run`` for predict / evaluate: (checkpoints with each run's best.pt added, the TTA to use).

    The first run's ``tta.yaml`` is used unless ``--tta`` was given; one spec weights every member.
    """
    require_train_extra(command)
    checkpoints = tuple(checkpoints or ()) + tuple(run_checkpoint(r) for r in runs)
    if not checkpoints:
        raise click.ClickException(f"{command}: give --checkpoint FILE or --run DIR (a folder of `augkit train`)")
    if runs and not tta_given:
        spec = next((s for s in (run_spec(r) for r in runs) if s), None)
        if spec is not None:
            spec = _spec_for(spec, len(checkpoints))
            tta = spec if isinstance(tta, str) else (spec,)
    return checkpoints, tta


def _spec_for(path: str, n_checkpoints: int):
    """A run's ``tta.yaml`` as it is when its weights were fitted for ``n_checkpoints`` models; else
    its views with plain weights (the fitted ones belong to another number of models), with a note."""
    from dataclasses import replace

    from .views import SpecError, load_spec
    try:
        spec = load_spec(path)
    except SpecError as e:
        raise click.ClickException(str(e)) from None
    if spec.weights is None or spec.weights.shape[0] // len(spec.views) == n_checkpoints:
        return path
    fitted = spec.weights.shape[0] // len(spec.views)
    click.echo(f"note: {path} was fitted for {fitted} model(s), the ensemble has {n_checkpoints}: its views are "
               "used with plain weights (fit the ensemble's own: augkit tta fit --checkpoint A/best.pt "
               "--checkpoint B/best.pt --data VAL --out ens.yaml)", err=True)
    return replace(spec, weights=None, models=None, name=f"{spec.name} (views of {os.path.basename(path)})")


def resolve_fit(run, checkpoints, data, out):
    """``tta fit --run DIR``: (checkpoints, validation data, output spec) from the run folder."""
    require_train_extra("augkit tta fit")
    if run is None:
        if not checkpoints or data is None or out is None:
            raise click.ClickException("augkit tta fit: give --run DIR, or --checkpoint, --data and --out")
        return checkpoints, data, out
    checkpoints = tuple(checkpoints or ()) or (run_checkpoint(run),)
    return checkpoints, data or validation_labels(run), out or _folder(run).tta_yaml
