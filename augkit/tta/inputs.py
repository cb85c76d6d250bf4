"""Inputs of the streaming runners and the checks made before any compute.

Everything here raises :class:`RunError` (a ``ValueError``) with one line that names the file,
row or option at fault and what was expected; the command lines print that line and exit 1.
Torch-free: the data readers are imported inside the functions.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS",
    "RunError",
    "as_spec",
    "check_fitted_for",
    "check_labels_match",
    "check_merge_weights",
    "check_scheme_points",
    "check_some_readable",
    "check_writable_out",
    "last_line",
    "n_points_of",
    "output_format",
    "read_labelled",
    "read_labelled_extras",
    "resolve_inputs",
    "test_points_path",
]

from augkit.errors import InputError
from augkit.io import IMAGE_EXTENSIONS  # noqa: E402  (one definition, re-exported)


class RunError(InputError):
    """Bad input for a runner: the message is one line meant for the user."""


def last_line(e: Exception) -> str:
    """The message of an error, without the traceback text a DataLoader worker wraps around it."""
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


def resolve_inputs(data):
    """``(paths, names, test_points or None)`` for ``data``: a folder with ``test_points.csv``
    (competition test: images listed there, in its order), a folder of images (or with
    ``images/``), or one image file."""
    data = os.fspath(data)
    if os.path.isfile(data):
        if os.path.basename(data) != "test_points.csv":
            return [os.path.abspath(data)], [os.path.basename(data)], None
        folder = os.path.dirname(os.path.abspath(data))
    else:
        folder = data
    if not os.path.isdir(folder):
        raise RunError(f"{data}: no such file or folder")
    root = os.path.join(folder, "images") if os.path.isdir(os.path.join(folder, "images")) else folder
    tp_path = os.path.join(folder, "test_points.csv")
    if os.path.isfile(tp_path):
        from augkit.data import DatasetError, read_test_points
        try:
            tp = read_test_points(tp_path)
        except DatasetError as e:
            raise RunError(str(e)) from None
        names = [n for n, _ in tp]
        return [os.path.abspath(os.path.join(root, n)) for n in names], names, tp
    names = sorted(f for f in os.listdir(root) if f.lower().endswith(IMAGE_EXTENSIONS)
                   and os.path.isfile(os.path.join(root, f)))
    if not names:
        raise RunError(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return [os.path.abspath(os.path.join(root, n)) for n in names], names, None


def test_points_path(data) -> str:
    data = os.fspath(data)
    return data if os.path.isfile(data) else os.path.join(data, "test_points.csv")


def read_labelled(data, limit=None, seed=0, warn=None):
    """``(files, points)`` of a labelled dataset: points float32 (N, K, 2), original pixels.

    ``limit`` keeps a random subset (sorted, reproducible by ``seed``); ``warn(line)`` is told how
    many rows the reader skipped."""
    files, points, _ = read_labelled_extras(data, limit, seed, warn)
    return files, points


def read_labelled_extras(data, limit=None, seed=0, warn=None):
    """``(files, points, extras)``: :func:`read_labelled`'s two, and ``extras``, a dict of what the
    label file gives beside the points (the public benchmarks' formats): ``boxes`` (N, 4),
    ``sizes`` (N,) (the box size the benchmark normalises by), ``attributes`` (name -> (N,) flags);
    each None where the dataset has none. The same subset as the points."""
    from augkit.data import DatasetError, read_dataset
    try:
        table = read_dataset(data)
    except (DatasetError, FileNotFoundError) as e:
        raise RunError(str(e)) from None
    if table.skipped and warn is not None:
        warn(f"{data}: {len(table.skipped)} row(s) skipped, first: {table.skipped[0]['reason']}")
    if limit and limit < len(table):
        table = table.subset(np.sort(np.random.default_rng(seed).choice(len(table), limit, replace=False)))
    extras = {"boxes": table.boxes, "sizes": table.box_size, "attributes": table.attributes or None}
    files, points = list(table.files), table.points
    del table
    # labels held for the whole pass in float32 (the readers' own dtype at scale); chunks are
    # taken to float64 where the metrics and the fit sum them
    return files, np.asarray(points, dtype=np.float32), extras


def output_format(out, fmt: str = "auto", has_test_points: bool = False) -> str:
    """The prediction file's format: ``submission``, ``csv`` or ``json``.

    ``auto`` goes by the extension of ``out``: ``.json`` gives JSON of all points; ``.csv`` gives
    the submission when the data has ``test_points.csv``, else CSV of all points; any other
    extension is refused (name the format with ``fmt``)."""
    if fmt not in ("auto", "submission", "csv", "json"):
        raise RunError(f"format must be auto, submission, csv or json, got {fmt!r}")
    if fmt == "auto":
        ext = os.path.splitext(os.fspath(out))[1].lower()
        if ext not in (".csv", ".json"):
            raise RunError(f"{os.fspath(out)}: cannot tell the format from the extension {ext or '(none)'!r}: "
                           "name the file .csv or .json, or give --format submission, csv or json")
        fmt = "json" if ext == ".json" else ("submission" if has_test_points else "csv")
    if fmt == "submission" and not has_test_points:
        raise RunError("--format submission needs a test_points.csv in --data")
    return fmt


def as_spec(tta):
    """Anything ``get_spec`` takes -> ``TTASpec`` (a bad spec: :class:`RunError`)."""
    from .views import SpecError, get_spec
    try:
        return get_spec(tta)
    except SpecError as e:
        raise RunError(str(e)) from None


def n_points_of(models) -> int | None:
    """The models' point count K (None when no model says)."""
    ks = {k for k in (getattr(m, "n_points", None) for m in models) if k is not None}
    if len(ks) > 1:
        raise RunError(f"the checkpoints predict different numbers of points: {sorted(ks)}")
    return ks.pop() if ks else None


def check_scheme_points(models, scheme) -> int | None:
    """K of the models; a ``scheme`` with another point count is refused before any compute."""
    k = n_points_of(models)
    if scheme is not None and k is not None:
        from augkit.schemes import get_scheme
        try:
            sch = get_scheme(scheme)
        except (ValueError, FileNotFoundError, KeyError) as e:
            raise RunError(f"--scheme {scheme}: {e}") from None
        if sch.n_points != k:
            raise RunError(f"--scheme {scheme}: the scheme has {sch.n_points} points, the checkpoint(s) predict {k}")
    return k


def check_merge_weights(spec, n_models: int, k: int | None) -> None:
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
        raise RunError(msg) from None


def check_fitted_for(spec, checkpoints, note=None) -> None:
    """A spec with fitted weights must be used with as many checkpoints as it was fitted for;
    ``note(line)`` is told when their names differ (same order assumed)."""
    if spec.weights is None:
        return
    n = spec.weights.shape[0] // len(spec.views)
    if n != len(checkpoints):
        raise RunError(f"{spec.source}: weights: fitted for {n} checkpoint(s) {spec.models or ''}, "
                       f"but {len(checkpoints)} were given")
    same = not spec.models or [os.path.basename(m) for m in spec.models] == [os.path.basename(c) for c in checkpoints]
    if not same and note is not None:
        note(f"note: {spec.source}: weights were fitted for {spec.models}, used with {list(checkpoints)} "
             "(same order assumed)")


def check_labels_match(k, truth, data) -> None:
    """The models' K must equal the labels' point count (checked before any compute)."""
    if k is not None and truth.shape[1] != k:
        raise RunError(f"{data}: the labels have {truth.shape[1]} points per image, the checkpoint(s) predict {k}: "
                       "evaluate and fit need a model of the same landmark layout")


def check_writable_out(path) -> None:
    """Fail before compute when ``path`` cannot be written (the message names ``path``)."""
    from augkit.files import OutputError, check_writable
    try:
        check_writable(path)
    except OutputError as e:
        raise RunError(str(e)) from None


def check_some_readable(n_ok: int, n: int, errors, data, what: str = "labelled image(s)") -> None:
    if n_ok == 0:
        first = errors[0][1] if errors else "no images"
        raise RunError(f"{data}: none of the {n} {what} could be read (first: {first})")
