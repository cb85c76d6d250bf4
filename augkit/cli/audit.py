"""``augkit audit``: the click command over :func:`augkit.audit.folds.run_audit`. Its training
options are ``augkit train``'s, generated from the same config fields."""

from __future__ import annotations


import click

from augkit.audit import DEFAULT_THRESHOLD
from augkit.cli.train import config_from_params, train_options, with_file_defaults
from augkit.run_folder import RunFolder
from augkit.train.config import option_fields

from . import Command

__all__ = ["audit"]

# train options the audit sets itself (each fold is a run folder in --out) or declares as its own
_NOT_FOR_AUDIT = ("data", "out", "exclude", "lr_find")
# a --run's options that do not carry over to the folds
_NOT_FROM_RUN = ("quiet",)


def _set_by_audit(*flags):
    """Hidden options that refuse, with one line, train options the audit sets itself."""
    def refuse(ctx, param, value):
        if value not in (None, False):
            raise click.UsageError(f"{param.opts[0]} is set by augkit audit itself (each fold is a run folder "
                                   f"in --out)", ctx=ctx)

    def decorate(command):
        for flag in flags:
            is_flag = flag == "--lr-find"
            command = click.option(flag, hidden=True, expose_value=False, callback=refuse, is_flag=is_flag,
                                   default=False if is_flag else None)(command)
        return command
    return decorate


@click.command("audit", cls=Command)
@click.option("--data", required=True, help="Labelled dataset to audit (as for augkit train --data).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for audit.csv, audit.png and one run folder per fold.")
@click.option("--folds", default=3, show_default=True, type=click.IntRange(2, 50), help="Out-of-fold models.")
@click.option("--tta", default="full", show_default=True,
              help="TTA views for the out-of-fold predictions; their disagreement on the face's place and size "
                   "is each image's own pose uncertainty (a single view: the set's typical error instead).")
@click.option("--run", "run_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Take the training options from this run's config.json (options given here override them).")
@click.option("--resume", is_flag=True, help="Continue an interrupted audit in --out (folds already done are kept).")
@click.option("--threshold", default=DEFAULT_THRESHOLD, show_default=True, type=float,
              help="Score (robust standard units over the set) above which a label is suspect.")
@click.option("--write-fixed", default=None, type=click.Path(dir_okay=False),
              help="Also write the label file with the rows diagnosed 'swap' re-indexed (others byte-identical).")
@click.option("--png", default=8, show_default=True, type=click.IntRange(0, 16), help="Top suspects in audit.png.")
@click.option("--sigma/--no-sigma", "use_sigma", default=True, show_default=True,
              help="Score the residuals against the fold models' own sigma when they have one (--head rle, "
                   "integral, simcc); --no-sigma: the set-wide per-landmark error, as for regression.")
@train_options(skip=_NOT_FOR_AUDIT)
@_set_by_audit("--exclude", "--nproc", "--lr-find")
@click.pass_context
def audit(ctx, data, out, folds, tta, run_dir, resume, threshold, write_fixed, png, use_sigma, **train_opts):
    """Find the labels most likely wrong: K models each trained on the other folds (with augkit
    train's options: --backbone, --size, --epochs, --val-group, ...) predict their held-out fold with
    TTA; every label gets a score against the model's own uncertainty and a diagnosis (swap, shift,
    scale, mismatch, points, ok). Writes OUT/audit.csv (most suspect first) and OUT/audit.png."""
    from augkit.extras import require_extra
    require_extra("train", "augkit audit")

    from augkit.audit.folds import run_audit
    from augkit.audit.folds import write_fixed as fix_labels
    cfg = _fold_config(ctx)
    res = run_audit(data, out, cfg, folds=folds, tta=tta, resume=resume, threshold=threshold, n_png=png,
                    device=cfg.device, log=click.echo, use_sigma=use_sigma)
    if write_fixed:
        from augkit.data import read_dataset
        n = fix_labels(read_dataset(data, format=cfg.format).source, res.csv, res.scheme, write_fixed)
    for note in res.notes:
        click.echo(f"note: {note}")
    if res.unaudited:
        click.echo(f"{len(res.unaudited)} row(s) skipped by the reader, not audited (first: "
                   f"{res.unaudited[0]['file']}: {res.unaudited[0]['reason']})")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(res.counts.items(), key=lambda kv: -kv[1]))
    click.echo(f"audited {res.n_images} images: {counts}")
    click.echo(f"wrote {res.csv}" + (f" and {res.png}" if res.png else ""))
    if write_fixed:
        click.echo(f"wrote {write_fixed}: {n} swapped row(s) re-indexed, every other line unchanged")


def _fold_config(ctx):
    """The TrainConfig of every fold: the train options given, over a ``--run``'s config.json."""
    names = {f.name for f in option_fields()} - set(_NOT_FOR_AUDIT)
    opts = {k: v for k, v in ctx.params.items() if k in names}
    run_dir = ctx.params.get("run_dir")
    if run_dir:
        opts = with_file_defaults(ctx, opts, RunFolder(run_dir).config_json, ignore=_NOT_FROM_RUN)
    return config_from_params({**opts, "data": ctx.params["data"]})
