"""Pictures: a grid of augmented samples with their landmarks, dataset mean shapes, and the worst
predictions of a model (``augkit evaluate``'s worst.png, TensorBoard's ``val/worst``)."""

from __future__ import annotations

import os

import cv2
import numpy as np

from augkit.errors import InputError
from . import metrics
from .compose import Compose
from .config import load
from .files import atomic_write_bytes, check_writable, write_figure
from .presets import face_augment_steps, preprocess_steps
from .schemes import get_scheme

__all__ = ["show_grid", "draw_points", "normalised_mean_shape", "worst_png", "SIDE_COLOURS", "PART_COLOURS"]

# first index of each flip pair, second index, midline (RGB)
SIDE_COLOURS = ((255, 60, 60), (60, 140, 255), (255, 230, 40))
# one colour per part of the scheme, in order (repeats after eight); points in no part are white
PART_COLOURS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                (70, 240, 240), (240, 50, 230))


def normalised_mean_shape(points) -> tuple[np.ndarray, int]:
    """Mean of the shapes after removing each face's position and size.

    Args:
        points: the dataset's landmarks, ``(N, K, 2)`` (``augkit.data.dataset_points``
            reads them from a dataset folder).

    Returns the (K, 2) mean shape (centred, unit RMS radius) and how many faces went into it.
    """
    pts = np.asarray(points, np.float64)
    ok = np.isfinite(pts).all(axis=(1, 2))
    pts = pts[ok]
    if not len(pts):
        raise InputError("no face with all points finite")
    centred = pts - pts.mean(axis=1, keepdims=True)
    radius = np.sqrt((centred ** 2).sum(axis=2).mean(axis=1))
    return (centred / radius[:, None, None]).mean(axis=0), int(len(pts))


def draw_points(image: np.ndarray, points: np.ndarray, scheme=None, visible=None, radius: int = 2,
                colour: str = "side") -> np.ndarray:
    """A copy of ``image`` (RGB) with the points drawn; points outside the frame are skipped.

    ``colour="side"``: the first point of each flip pair in red, the second in blue, midline points
    in yellow. ``colour="part"``: each part of the scheme in its own colour (``PART_COLOURS``), the
    side by the mark: the first point of a pair filled, the second a ring, a midline point a dot.
    """
    if colour not in ("side", "part"):
        raise InputError(f"colour must be 'side' or 'part', got {colour!r}")
    out = np.ascontiguousarray(image if image.ndim == 3 and image.shape[2] == 3 else
                               cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)).copy()
    side = np.full(len(points), 2)
    if scheme is not None:
        for a, b in scheme.flip_pairs:
            side[a], side[b] = 0, 1
    part = scheme.part_index() if colour == "part" and scheme is not None and scheme.parts else None
    for i, (x, y) in enumerate(points):
        if (visible is not None and not visible[i]) or not np.isfinite([x, y]).all():
            continue
        centre = (int(round(x * 16)), int(round(y * 16)))
        if colour == "side":
            cv2.circle(out, centre, radius * 16, SIDE_COLOURS[side[i]], -1, cv2.LINE_AA, shift=4)
            continue
        rgb = (255, 255, 255) if part is None or part[i] < 0 else PART_COLOURS[part[i] % len(PART_COLOURS)]
        size, fill = ((radius, -1), (radius, max(1, radius // 2)), (max(1, radius // 2), -1))[side[i]]
        cv2.circle(out, centre, size * 16, rgb, fill, cv2.LINE_AA, shift=4)
    return out


def _check_points_fit(points, sch, source: str) -> None:
    if np.asarray(points).shape[0] != sch.n_points:
        raise InputError(f"{source}: the data has {np.asarray(points).shape[0]} points per face, the scheme "
                         f"{sch.name!r} has {sch.n_points}: pass --scheme with a scheme of that many points")


def show_grid(samples, aug=None, n: int = 16, size: int = 160, scheme="ibug68", seed: int = 0,
              out: str = "grid.png", skipped: list | None = None, source: str = "the data",
              colour: str = "side") -> str:
    """Write a PNG grid of ``n`` augmented samples with their landmarks; return its path.

    ``samples(n, rng)`` yields (image, points) pairs (``augkit.data.grid_samples`` reads a
    dataset or draws the synthetic demo faces); an image given as an exception instead of an array
    is an unreadable file: it is skipped (the grid has one tile less) and its reason is appended to
    ``skipped`` when a list is given. No readable image at all is an error naming ``source``.
    ``colour``: ``"side"`` or ``"part"``, as in :func:`draw_points`.
    """
    sch = get_scheme(scheme)
    steps = load(aug).steps if aug else face_augment_steps()
    pipe = Compose(preprocess_steps(size) + steps, scheme=sch)
    check_writable(out)
    rng = np.random.default_rng(seed)
    tiles, reasons = [], []
    for image, points in samples(n, rng):
        if isinstance(image, Exception):
            reasons.append(str(image))
            continue
        _check_points_fit(points, sch, source)
        res = pipe(image, points, rng=rng)
        assert res.points is not None   # points were given, so the result has them
        tiles.append(draw_points(res.image, res.points, sch, res.visible, radius=max(1, size // 80), colour=colour))
    if skipped is not None:
        skipped.extend(reasons)
    if not tiles:
        raise InputError(f"{source}: no samples to draw ({len(reasons)} unreadable image(s)"
                         + (f", first: {reasons[0]})" if reasons else ")"))
    cols = int(np.ceil(np.sqrt(len(tiles))))
    rows = int(np.ceil(len(tiles) / cols))
    grid = np.full((rows * (size + 4) + 4, cols * (size + 4) + 4, 3), 255, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        grid[4 + r * (size + 4):4 + r * (size + 4) + size, 4 + c * (size + 4):4 + c * (size + 4) + size] = tile
    ok, buf = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("could not encode the grid as PNG")
    atomic_write_bytes(out, buf.tobytes())
    return os.path.abspath(out)


def worst_png(path, files, truth, pred, spread, scheme=None, n: int = 8, title: str = "") -> list:
    """Draw the ``n`` images with the highest NME: truth (green), prediction (red) with a circle of
    radius = the per-point spread (TTA uncertainty). Returns the indices drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import ImageReadError, read_image

    truth, pred, spread = (np.asarray(a, dtype=np.float64) for a in (truth, pred, spread))
    ok = np.isfinite(pred).all(axis=(1, 2)) & np.isfinite(truth).all(axis=(1, 2))
    idx = np.flatnonzero(ok)
    nme = metrics.per_image_nme(pred[idx], truth[idx], scheme)
    worst = idx[np.argsort(-nme)[:n]]
    e_of = dict(zip(idx.tolist(), nme.tolist()))
    cols = min(4, max(1, len(worst)))
    rows = max(1, -(-len(worst) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), worst):
        try:
            ax.imshow(read_image(files[i]) if isinstance(files[i], str) else files[i])
        except ImageReadError:
            pass
        ax.scatter(truth[i, :, 0], truth[i, :, 1], s=6, c="lime", label="truth")
        ax.scatter(pred[i, :, 0], pred[i, :, 1], s=6, c="red", label="prediction")
        for (x, y), r in zip(pred[i], spread[i]):
            if r > 0:
                ax.add_patch(plt.Circle((x, y), r, fill=False, color="yellow", lw=0.6))
        name = files[i].rsplit("/", 1)[-1] if isinstance(files[i], str) else f"#{i}"
        ax.set_title(f"{name[:28]}\nNME {e_of[int(i)]:.3f}", fontsize=7)
    if len(worst):
        axes.ravel()[0].legend(loc="lower left", fontsize=6)
    fig.suptitle(title or "worst predictions (green truth, red prediction, yellow: TTA spread)", fontsize=9)
    write_figure(fig, path, dpi=110)
    return worst.tolist()
