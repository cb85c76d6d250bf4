"""The ``augkit`` command line. Light commands live here; ``train``, ``predict``, ``evaluate`` and
``tta`` are loaded from ``augkit.train.cli`` / ``augkit.tta.cli`` only when called, so
``augkit --help`` and ``augkit show`` never import torch."""

from __future__ import annotations

import importlib

import click

# command name -> (module, attribute); imported on first use
LAZY_COMMANDS = {
    "train": ("augkit.train.cli", "train"),
    "predict": ("augkit.tta.cli", "predict"),
    "evaluate": ("augkit.tta.cli", "evaluate"),
    "tta": ("augkit.tta.cli", "tta"),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx, name):
        if name in LAZY_COMMANDS:
            module, attr = LAZY_COMMANDS[name]
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup)
@click.version_option(package_name="augkit")
def main():
    """augkit: invertible augmentations and TTA for landmark regression."""


@main.command()
@click.option("--data", "data", default=None, help="Dataset folder (competition layout, CSV or .pts); "
              "default: the built-in synthetic demo faces.")
@click.option("--aug", "aug", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Pipeline YAML; default: augkit's training pipeline for faces.")
@click.option("--n", "n", default=16, show_default=True, type=click.IntRange(1, 256), help="Samples in the grid.")
@click.option("--size", default=160, show_default=True, type=click.IntRange(16, 1024), help="Tile size in pixels.")
@click.option("--scheme", default="ibug68", show_default=True, help="Landmark scheme (name or file).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", "out", default="grid.png", show_default=True, type=click.Path(dir_okay=False))
def show(data, aug, n, size, scheme, seed, out):
    """Draw a grid of augmented samples with their landmarks (left side, right side and midline
    points in different colours: a wrong flip shows at a glance)."""
    from augkit.train.samples import grid_samples
    from .show import show_grid
    path = show_grid(lambda k, rng: grid_samples(data, k, rng), aug=aug, n=n, size=size, scheme=scheme, seed=seed,
                     out=out)
    click.echo(f"wrote {path}")


@main.group()
def scheme():
    """Landmark schemes: check flip pairs against data, or infer them."""


@scheme.command("check")
@click.option("--data", required=True, help="Dataset folder with landmarks.")
@click.option("--scheme", "name", default="ibug68", show_default=True, help="Scheme name or file.")
def scheme_check(data, name):
    """Report how well the scheme's flip pairs mirror the dataset's mean shape."""
    from .schemes import get_scheme, mirror_error
    from .show import mean_shape
    sch = get_scheme(name)
    from augkit.train.samples import dataset_points
    shape, count = mean_shape(dataset_points(data))
    if shape.shape[0] != sch.n_points:
        raise click.ClickException(f"{data}: the data has {shape.shape[0]} points per face, "
                                   f"the scheme {sch.name!r} has {sch.n_points}")
    with_pairs = mirror_error(shape, sch)
    without = mirror_error(shape, perm=list(range(sch.n_points)))
    click.echo(f"scheme {sch.name}: {len(sch.flip_pairs)} flip pairs, {sch.n_points - 2 * len(sch.flip_pairs)} "
               f"midline points; mean shape of {count} faces")
    click.echo(f"mirrored mean-shape error (units of the shape's RMS radius): {with_pairs:.4f} with the pairs, "
               f"{without:.4f} without")
    click.echo("pairs look right" if with_pairs < 0.5 * without else "WARNING: the pairs do not mirror this data")


@scheme.command("infer")
@click.option("--data", required=True, help="Dataset folder with landmarks.")
@click.option("--name", default="inferred", show_default=True, help="Name of the new scheme.")
@click.option("--norm", nargs=2, type=int, default=None, help="Two point indices that normalise NME.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Scheme file to write (YAML/JSON).")
def scheme_infer(data, name, norm, out):
    """Find the flip pairs from the data: mirror the mean shape and match points optimally."""
    from .schemes import Scheme, infer_pairs
    from .show import mean_shape
    from augkit.train.samples import dataset_points
    shape, count = mean_shape(dataset_points(data))
    pairs, err = infer_pairs(shape)
    sch = Scheme(name, int(shape.shape[0]), tuple(pairs), tuple(norm) if norm else None)
    sch.save(out)
    click.echo(f"{len(pairs)} flip pairs and {sch.n_points - 2 * len(pairs)} midline points from the mean shape "
               f"of {count} faces; mirrored error {err:.4f} (units of RMS radius)")
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
