"""``augkit show`` and ``augkit scheme check / infer / export``: the light commands (numpy and
OpenCV; ``scheme infer`` also scipy)."""

from __future__ import annotations

import click

from augkit.errors import InputError
from augkit.extras import require_extra

from . import Command, Group

__all__ = ["scheme", "show"]


def _scheme_option(ctx, param, value):
    """Resolve ``--scheme`` at parse time: an unknown name or a bad file is a usage error (exit 2)."""
    from augkit.schemes import get_scheme
    try:
        return get_scheme(value)
    except (ValueError, OSError) as e:
        raise click.BadParameter(str(e), ctx=ctx, param=param) from None


@click.command(cls=Command)
@click.option("--data", "data", default=None, help="Dataset folder (competition layout, CSV or .pts); "
              "default: the built-in synthetic demo faces.")
@click.option("--aug", "aug", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Pipeline YAML; default: augkit's training pipeline for faces.")
@click.option("--n", "n", default=16, show_default=True, type=click.IntRange(1, 256), help="Samples in the grid.")
@click.option("--size", default=160, show_default=True, type=click.IntRange(16, 1024), help="Tile size in pixels.")
@click.option("--scheme", default="ibug68", show_default=True, callback=_scheme_option,
              help="Landmark scheme (name or file).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", "out", default="grid.png", show_default=True, type=click.Path(dir_okay=False))
@click.option("--colour", "colour", default="side", show_default=True, type=click.Choice(["side", "part"]),
              help="side: flip pairs red/blue, midline yellow; part: a colour per part of the scheme "
                   "(first of a pair filled, second a ring, midline a dot).")
def show(data, aug, n, size, scheme, seed, out, colour):
    """Draw a grid of augmented samples with their landmarks (left side, right side and midline
    points in different colours: a wrong flip shows at a glance). Unreadable images are skipped and
    counted."""
    from augkit.data.samples import grid_samples
    from augkit.show import show_grid
    skipped = []
    path = show_grid(lambda k, rng: grid_samples(data, k, rng), aug=aug, n=n, size=size, scheme=scheme,
                     seed=seed, out=out, skipped=skipped, source=data or "the demo faces", colour=colour)
    click.echo(f"wrote {path}" + (f" (skipped {len(skipped)} unreadable image(s))" if skipped else ""))
    for why in skipped[:10]:
        click.echo(f"  skipped: {why}", err=True)


@click.group(cls=Group)
def scheme():
    """Landmark schemes: check flip pairs against data, infer them, export them to other libraries."""


@scheme.command("check")
@click.option("--data", required=True, help="Dataset folder with landmarks.")
@click.option("--scheme", "sch", default="ibug68", show_default=True, callback=_scheme_option,
              help="Scheme name or file.")
def scheme_check(data, sch):
    """Report how well the scheme's flip pairs mirror the dataset's mean shape, part by part: each
    part's pairs against their nearest alternatives (a chain shifted by one sample, reversed)."""
    from augkit.symmetry import margin_lines, pairing_confidence, unsure
    from augkit.symmetry import mirror_error
    shape, count = _mean_shape(data, sch.n_points, sch.name)
    with_pairs = mirror_error(shape, sch)
    without = mirror_error(shape, perm=list(range(sch.n_points)))
    click.echo(f"scheme {sch.name}: {len(sch.flip_pairs)} flip pairs, {sch.n_points - 2 * len(sch.flip_pairs)} "
               f"midline points; mean shape of {count} faces")
    click.echo(f"mirrored mean-shape error (units of the shape's RMS radius): {with_pairs:.4f} with the pairs, "
               f"{without:.4f} without")
    if with_pairs >= 0.5 * without:
        click.echo("WARNING: the pairs do not mirror this data")
        return
    margins = pairing_confidence(shape, sch.perm, sch.parts or None)
    for line in margin_lines(margins):
        click.echo(line)
    bad = unsure(margins)
    if not bad:
        click.echo("pairs look right: every part is certain (its nearest alternative mirrors the data "
                   "at least 5% worse)")
    for m in bad:
        click.echo(f"WARNING: {m.name} is not certain: {m.alternative} mirrors the data "
                   + ("better" if m.verdict == "wrong" else "almost as well") + f" ({m.margin:+.0%})")


@scheme.command("infer")
@click.option("--data", required=True, help="Dataset folder with landmarks.")
@click.option("--scheme", "base", default=None, callback=lambda c, p, v: None if v is None else _scheme_option(c, p, v),
              help="A scheme to complete (its parts and norm kept, its pairs inferred), e.g. made971.")
@click.option("--parts", default=None, help="Parts NAME:LOW-HIGH,... (inclusive): no pair crosses two parts.")
@click.option("--name", default=None, help="Name of the new scheme (default: the --scheme's, or 'inferred').")
@click.option("--norm", nargs=2, type=int, default=None, help="Two point indices that normalise NME.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Scheme file to write (YAML/JSON).")
def scheme_infer(data, base, parts, name, norm, out):
    """Find the flip pairs from the data: mirror the mean shape, match points optimally, then keep
    each chain of consecutive points mapped consistently onto its mirror chain."""
    from augkit.files import check_writable
    require_extra("train", "augkit scheme infer")  # scipy's assignment solver
    from augkit.symmetry import infer_scheme, margin_lines, unsure
    from augkit.schemes import parse_parts
    check_writable(out)
    shape, count = _mean_shape(data, base.n_points if base else None, base.name if base else None)
    _check_norm(norm, shape.shape[0])
    part_list = parse_parts(parts) if parts else (base.parts if base else ())
    sch, err, margins = infer_scheme(shape, name or (base.name if base else "inferred"), part_list,
                                     base.mirror_parts if base and not parts else (),
                                     tuple(norm) if norm else (base.norm if base else None))
    sch.save(out)
    click.echo(f"{len(sch.flip_pairs)} flip pairs and {sch.n_points - 2 * len(sch.flip_pairs)} midline points from "
               f"the mean shape of {count} faces; mirrored error {err:.4f} (units of RMS radius)")
    for line in margin_lines(margins):
        click.echo(line)
    for m in unsure(margins):
        click.echo(f"WARNING: the pairs of {m.name} are not certain ({m.alternative} is within {m.margin:+.0%}): "
                   "check them with augkit show before training with flips", err=True)
    click.echo(f"wrote {out}")


@scheme.command("export")
@click.option("--scheme", "sch", default="ibug68", show_default=True, callback=_scheme_option,
              help="Scheme name or file (e.g. one `augkit scheme infer` wrote for a dense layout).")
@click.option("--to", "to", required=True, type=click.Choice(["albumentations", "mmpose", "ultralytics"]),
              help="albumentations: AlbumentationsX's label_mapping (Python); mmpose: a dataset_info file whose "
                   "swaps give flip_indices (Python); ultralytics: kpt_shape and flip_idx for the dataset YAML.")
@click.option("--out", "out", default="-", show_default=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="File to write ('-': standard output).")
def scheme_export(sch, to, out):
    """Write the scheme's flip pairs in the form AlbumentationsX, mmpose or ultralytics reads."""
    from augkit.scheme_export import export_flip_pairs
    text = export_flip_pairs(sch, to)
    if out == "-":
        click.echo(text, nl=False)
        return
    from augkit.files import atomic_write_text
    atomic_write_text(out, text)
    click.echo(f"wrote {out} ({to}: {len(sch.flip_pairs)} flip pairs of {sch.name})", err=True)


def _mean_shape(data, n_points, scheme_name):
    """The dataset's mean shape and face count; its point count must match the scheme's."""
    from augkit.data.samples import dataset_points
    from augkit.show import normalised_mean_shape
    shape, count = normalised_mean_shape(dataset_points(data))
    if n_points is not None and shape.shape[0] != n_points:
        raise InputError(f"{data}: the data has {shape.shape[0]} points per face, "
                         f"the scheme {scheme_name!r} has {n_points}")
    return shape, count


def _check_norm(norm, n_points: int) -> None:
    """``--norm`` must name two distinct points of the data."""
    if not norm:
        return
    bad = [i for i in norm if not 0 <= i < n_points]
    if bad or norm[0] == norm[1]:
        why = f"index {bad[0]} is out of range" if bad else "the two indices are the same"
        raise click.BadParameter(f"{norm[0]} {norm[1]}: {why}; expected two different point indices in "
                                 f"0..{n_points - 1} (the data has {n_points} points per face)",
                                 param_hint="'--norm'")
