"""Images and landmarks for ``augkit show`` and ``augkit scheme``: the core's picture and
mean-shape functions take arrays and pairs, and this module reads them from a dataset (any
registered label format) or draws the synthetic demo faces. numpy and OpenCV only, so
``augkit show --data`` and ``augkit scheme check --data`` run on a core install."""

from __future__ import annotations

import numpy as np

__all__ = ["dataset_points", "grid_samples"]


def dataset_points(data: str) -> np.ndarray:
    """All landmark rows of a dataset. Shape: (N, K, 2), float64."""
    from .formats import read_dataset
    return np.asarray(read_dataset(data).points, np.float64)


def grid_samples(data: str | None, n: int, rng: np.random.Generator):
    """``n`` (image, points) pairs: random images of a dataset (an unreadable one as its
    ImageReadError in place of the image), or, with ``data=None``, synthetic demo faces."""
    if data is None:
        from .synthetic import make_face
        for i in range(n):
            yield make_face(np.random.default_rng([int(rng.integers(2**31)), i]))
        return
    from .formats import read_dataset
    table = read_dataset(data)
    for i in rng.choice(len(table), size=min(n, len(table)), replace=False):
        yield _read_or_reason(table.files[i]), table.points[i]


def _read_or_reason(path):
    """The image at ``path``, or the ImageReadError saying why it cannot be read (not raised: the
    grid skips and counts it)."""
    from augkit.io import ImageReadError, read_image
    try:
        return read_image(path)
    except ImageReadError as e:
        return e
