"""``augkit audit``: the click command over :func:`augkit.tta.audit.run_audit`."""

from __future__ import annotations

import json
import os

import click

__all__ = ["audit"]


@click.command("audit", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--data", required=True, help="Labelled dataset to audit (as for augkit train --data).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for audit.csv, audit.png and one run folder per fold.")
@click.option("--folds", default=3, show_default=True, type=click.IntRange(2, 50), help="Out-of-fold models.")
@click.option("--tta", default="flip", show_default=True, help="TTA views for the out-of-fold predictions.")
@click.option("--run", "run_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Take the training options from this run's config.json (TRAIN_OPTIONS then override them).")
@click.option("--resume", is_flag=True, help="Continue an interrupted audit in --out (folds already done are kept).")
@click.option("--threshold", default=None, type=float,
              help="Score (robust standard units over the set) above which a label is suspect [8.0].")
@click.option("--write-fixed", default=None, type=click.Path(dir_okay=False),
              help="Also write the label file with the rows diagnosed 'swap' re-indexed (others byte-identical).")
@click.option("--png", default=8, show_default=True, type=click.IntRange(0, 16), help="Top suspects in audit.png.")
@click.pass_context
def audit(ctx, data, out, folds, tta, run_dir, resume, threshold, write_fixed, png):
    """Find the labels most likely wrong: K models each trained on the other folds (TRAIN_OPTIONS are
    augkit train's: --backbone, --size, --epochs, --val-group, ...) predict their held-out fold with
    TTA; every label gets a score against the model's own uncertainty and a diagnosis (swap, shift,
    scale, mismatch, points, ok). Writes OUT/audit.csv (most suspect first) and OUT/audit.png."""
    from augkit.extras import command_requires
    command_requires("train", "augkit audit")
    from augkit.audit import DEFAULT_THRESHOLD
    from augkit.train.cli import config_from_args

    from .audit import run_audit, write_fixed as fix_labels
    args = list(ctx.args)
    if run_dir:
        args = _run_args(run_dir) + args
    for bad in ("--out", "--resume", "--exclude", "--nproc", "--lr-find"):
        if bad in args:
            raise click.UsageError(f"{bad} is set by augkit audit itself (each fold is a run folder in --out)")
    cfg, _ = config_from_args(["--data", data] + [a for a in args if a != "--data"], "augkit audit")
    try:
        res = run_audit(data, out, cfg, folds=folds, tta=tta, resume=resume,
                        threshold=DEFAULT_THRESHOLD if threshold is None else threshold, n_png=png,
                        device=cfg.device if cfg.device != "auto" else "cpu", log=click.echo)
        if write_fixed:
            from augkit.train.readers import read_dataset
            n = fix_labels(read_dataset(data, format=cfg.format).source, res.csv, res.scheme, write_fixed)
    except (ValueError, OSError) as e:
        raise click.ClickException(str(e).splitlines()[-1] if str(e) else type(e).__name__) from None
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


def _run_args(run_dir) -> list:
    """augkit train options from a run's config.json (those that differ from the defaults)."""
    from augkit.train.cli import train
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    args = []
    for p in train.params:
        key = "format" if p.name == "fmt" else p.name
        if key in ("data", "out", "exclude", "quiet", "lr_find") or key not in cfg or cfg[key] is None \
                or cfg[key] == p.default or (p.is_flag and not p.secondary_opts and not cfg[key]):
            continue
        flag = max(p.opts, key=len)
        if p.is_flag:
            args.append(flag if cfg[key] else (p.secondary_opts[0] if p.secondary_opts else flag))
        else:
            args += [flag, str(cfg[key])]
    return args
