"""Compose: the pipeline. Sampling, fusion into one warp, the record, replay and invert.

A call walks the tree of steps once, asking each step to ``walk`` itself into a ``Plan``
(:mod:`augkit.steps`): geometric steps multiply into one 3x3 matrix (and count flips),
photometric steps are queued with their values, containers (``OneOf`` / ``Sometimes`` in
:mod:`augkit.containers`, a nested ``Compose``) walk their children. Then the image is warped ONCE into the
final frame and the queued photometric steps run on the result, in order. Points move by the same
matrix and, after an odd number of flips, by the scheme's left/right permutation.

The record of a call is a small JSON-serialisable dict::

    {"in": [w, h], "out": [w, h], "M": [[a, b, c], [d, e, f]], "flips": n, "steps": [...]}

(``M`` has a third row ``[g, h, 1]`` when a ``Perspective`` step made the call projective: the image
is then warped once with ``cv2.warpPerspective``, and points move by the projective map.)

where ``steps`` holds, per step, ``None`` (did not run) or the values it ran with (a OneOf:
``{"choice": i, "value": ...}``; a nested Compose: a list).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from augkit.errors import InputError
from . import functional as F
from . import geometry as G
from ._checks import check_image, check_points
from .containers import OneOf, Sometimes, check_steps, steps_arg
from .schemes import Scheme, get_scheme
from .steps import Plan, Step, step_from_dict

__all__ = ["Compose", "OneOf", "Result", "Sometimes", "invert_points", "matrix_entry", "matrix_singular", "record_flips",
           "record_matrix", "step_from_dict"]


@dataclass
class Result:
    """The output of one pipeline call.

    Shape: ``image`` (h, w[, C]); ``points`` (K, 2) or None; ``visible`` (K,) bool or None.
    """

    image: np.ndarray
    points: np.ndarray | None
    visible: np.ndarray | None
    record: dict
    pipeline: Compose = field(repr=False)

    @property
    def matrix(self) -> np.ndarray:
        """The fused 3x3 matrix, input frame -> output frame."""
        return record_matrix(self.record)

    def invert(self, points) -> np.ndarray:
        """Output frame -> input frame, flip permutation undone. Shape: (..., K, 2)."""
        return self.pipeline.invert(self.record, points)


def record_matrix(record: dict) -> np.ndarray:
    """The record's ``M`` as a 3x3 matrix; a clear error when the field is missing or malformed.

    ``M`` is 2x3 (the affine rows) for an affine call and 3x3 for a projective one (a call with a
    ``Perspective`` step), scaled so that ``M[2][2]`` is 1.
    """
    if not isinstance(record, dict):
        raise InputError(f"a record must be the dict of a pipeline call, got {type(record).__name__}")  # noqa: TRY004 - bad file content: ValueError, as callers expect
    if "M" not in record:
        raise InputError("the record has no field 'M' (the fused 2x3 matrix of the call): expected the record "
                         "of a pipeline call")
    try:
        m2 = np.array(record["M"], dtype=np.float64)
    except (TypeError, ValueError):
        m2 = None
    if m2 is None or m2.shape not in ((2, 3), (3, 3)) or not np.isfinite(m2).all():
        shown = repr(record["M"])
        raise InputError(f"the record's field 'M' must be a 2x3 matrix (or 3x3 for a projective call) of finite "
                         f"numbers, got {shown[:80] + '...' if len(shown) > 80 else shown}")
    if m2.shape == (3, 3):
        return m2
    m = np.eye(3)
    m[:2] = m2
    return m


def matrix_entry(m: np.ndarray) -> list:
    """A 3x3 matrix as a record's ``M``: its two affine rows, or all three when it is projective."""
    return (m[:2] if G.is_affine(m) else m).tolist()


def matrix_singular(m: np.ndarray) -> bool:
    """True when the 3x3 ``m`` (affine or projective) cannot be inverted."""
    if G.is_affine(m):
        return abs(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]) < 1e-12
    return abs(float(np.linalg.det(m))) < 1e-12


def record_flips(record: dict) -> int:
    """The record's ``flips`` (how many horizontal flips the call made); a clear error when malformed."""
    flips = record.get("flips")
    if isinstance(flips, bool) or not isinstance(flips, (int, np.integer)) or flips < 0:
        raise InputError(f"the record's field 'flips' must be a non-negative whole number, got {flips!r}")
    return int(flips)


def invert_points(record: dict, points, scheme: Scheme | str | None = None) -> np.ndarray:
    """Map points from a record's output frame back to its input frame.

    The fused matrix is inverted exactly; after an odd number of flips the scheme's left/right
    permutation is applied again (it is its own inverse). A new array is returned.

    Shape: ``points`` (..., K, 2) -> (..., K, 2).
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim < 2 or p.shape[-1] != 2:
        raise InputError(f"points to invert must have shape (..., K, 2), got {p.shape}")
    m = record_matrix(record)
    if matrix_singular(m):
        raise InputError(f"the record's field 'M' is singular ({record['M']!r}): its points cannot be mapped back")
    if record_flips(record) % 2:
        if scheme is None:
            if not record.get("unordered"):
                raise InputError("this record holds a flip: pass the scheme that swaps left/right points")
        else:
            scheme = get_scheme(scheme)
            if p.shape[-2] != scheme.n_points:
                raise InputError(f"points have {p.shape[-2]} rows, the scheme {scheme.name!r} has {scheme.n_points}")
            p = p[..., scheme.perm, :]
    return G.apply_points(G.invert(m), p)


class Compose(Step):
    """A pipeline: steps in order, all geometry fused into one warp.

    Args:
        steps: augkit steps (geometric, photometric, OneOf, Sometimes, nested Compose).
        scheme: landmark layout (name, file, dict or Scheme) used to swap indices on a flip.
        points_unordered: allow flips without a scheme (the points carry no left/right identity).
        border_mode: "constant", "reflect", "replicate" or "wrap" for pixels from outside.
        fill: value of "constant" borders.
        interpolation: "linear" (default), "nearest", "cubic", "area" or "lanczos".
        preshrink: when the fused matrix shrinks a source axis below this factor, that axis is
            first reduced with INTER_AREA so the warp does not alias (0 turns it off).
        p: probability of the whole pipeline (when nested).

    Call: ``pipe(image, points=None, rng=None, box=None) -> Result``. ``rng`` (a
    ``numpy.random.Generator``) is required unless the pipeline is deterministic.
    """

    def __init__(self, steps, scheme=None, points_unordered=False, border_mode="constant", fill=0,
                 interpolation="linear", preshrink=0.5, p=1.0):
        super().__init__(p)
        self.steps = check_steps(steps, "Compose")
        self.scheme = None if scheme is None else get_scheme(scheme)
        self.points_unordered = bool(points_unordered)
        self.border_mode, self.fill, self.interpolation = border_mode, _check_fill(fill), interpolation
        if not 0.0 <= float(preshrink) < 1.0:
            raise InputError(f"Compose: preshrink must be in [0, 1), got {preshrink!r}")
        self.preshrink = float(preshrink)
        self._border = F.border_flag(border_mode)
        self._interp = F.interpolation_flag(interpolation)
        self._flips_unordered = self.scheme is None and not self.points_unordered and self.may_flip

    # ------------------------------------------------------------------ public surface
    @property
    def deterministic(self) -> bool:
        return self.p in (0.0, 1.0) and all(s.deterministic for s in self.steps)

    def __call__(self, image, points=None, rng: np.random.Generator | None = None, box=None) -> Result:
        if rng is None and not self.deterministic:
            raise InputError("this pipeline draws random values: pass rng=np.random.default_rng(seed)")
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return self._run(image, points, rng, None, box)

    def replay(self, record: dict, image, points=None, box=None) -> Result:
        """Apply the values of ``record`` (from any call of this pipeline) to ``image`` and ``points``.

        The geometry is recomputed from the recorded step values (as the call did); the record's
        ``in`` (input size) and ``M`` (fused matrix) must agree with it, so that ``replay`` and
        ``invert_points`` (which reads ``M``) can never disagree: an edited or foreign record is
        refused. A ``CropBox`` uses the box of the record unless ``box`` is given here (then the
        matrix legitimately differs and ``M`` is not compared).

        Raises:
            ValueError: the record does not fit this pipeline or this image, names the field.
        """
        if not isinstance(record, dict) or "steps" not in record:
            raise InputError("replay needs the record of a call of this pipeline (a dict with 'steps')")
        image = check_image(image)
        size = [image.shape[1], image.shape[0]]
        if "in" in record and _plain_list(record["in"]) != size:
            raise InputError(f"the record's field 'in' is {record['in']!r} but the image is {size} (w, h): a record "
                             "replays on an image of the size it was made on")
        result = self._run(image, points, None, record["steps"], box)
        if "flips" in record and record_flips(record) != result.record["flips"]:
            raise InputError(f"the record's field 'flips' is {record['flips']!r} but its steps flip "
                             f"{result.record['flips']} time(s): the record was edited or belongs to another pipeline")
        if "M" in record and box is None:
            recorded, recomputed = record_matrix(record), result.matrix
            if not np.allclose(recorded, recomputed, rtol=1e-9, atol=1e-6):
                raise InputError(f"the record's field 'M' {np.round(recorded, 4).tolist()} does not match the "
                                 f"matrix its step values give, {np.round(recomputed, 4).tolist()}: the record was "
                                 "edited or belongs to another pipeline")
        return result

    @property
    def can_flip(self) -> bool:
        """True when some step of the tree flips (the points then need a scheme)."""
        return self.may_flip

    def plan(self, size: tuple[int, int], rng: np.random.Generator | None = None, box=None):
        """The geometry of one call on an image of ``size = (w, h)``, without touching pixels.

        Returns ``(M, (w, h), flips)``: the fused 3x3 matrix, the output size and the number of
        flips. Draws from ``rng`` exactly as a call would (required unless deterministic).
        """
        if rng is None and not self.deterministic:
            raise InputError("this pipeline draws random values: pass rng=np.random.default_rng(seed)")
        plan = Plan((int(size[0]), int(size[1])), None, None if box is None else _check_box(box))
        walk_steps(self.steps, plan, rng, None)
        return plan.matrix, plan.size, plan.flips

    def invert(self, record: dict, points) -> np.ndarray:
        """Output-frame points of a call -> its input frame. Shape: (..., K, 2)."""
        return invert_points(record, points, self.scheme)

    def to_dict(self) -> dict:
        d = {"type": "Compose", "steps": [s.to_dict() for s in self.steps]}
        if self.scheme is not None:
            d["scheme"] = self.scheme.name if self.scheme.builtin else self.scheme.to_dict()
        for key, default in (("points_unordered", False), ("border_mode", "constant"), ("fill", 0),
                             ("interpolation", "linear"), ("preshrink", 0.5), ("p", 1.0)):
            value = getattr(self, key)
            if value != default:
                d[key] = list(value) if isinstance(value, tuple) else value
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "pipeline") -> Compose:
        """Rebuild a pipeline from ``to_dict`` output (or a hand-written YAML dict); a single step
        is wrapped in a pipeline."""
        step = step_from_dict(d, where)
        if not isinstance(step, Compose):
            step = Compose([step])
        return step

    @classmethod
    def from_args(cls, args, where):
        return cls(**steps_arg(args, "Compose", where))

    # ------------------------------------------------------------------ structure and the walk
    def children(self) -> tuple:
        return tuple(self.steps)

    def contribute(self, plan, rng, entry):
        """Nested in another pipeline: its steps run into the outer plan (one warp for all)."""
        if entry is not None and (not isinstance(entry, list) or len(entry) != len(self.steps)):
            raise InputError(f"the record does not fit this pipeline: expected a list of {len(self.steps)} "
                             f"entries for a nested Compose, got {entry!r}")
        return walk_steps(self.steps, plan, rng, entry)

    def _run(self, image, points, rng, steps_record, box) -> Result:
        image = check_image(image)
        h, w = image.shape[:2]
        pts = None
        if points is not None:
            if self._flips_unordered:
                raise InputError("this pipeline flips, but has no scheme to swap left/right landmark indices: "
                                 "pass scheme='ibug68' (or a scheme file), or points_unordered=True if the "
                                 "points carry no left/right identity")
            pts = check_points(points, None if self.scheme is None else self.scheme.n_points,
                               None if self.scheme is None else self.scheme.name)
        if box is not None:
            box = _check_box(box)
        plan = Plan((w, h), pts, box)
        if steps_record is not None and len(steps_record) != len(self.steps):
            raise InputError(f"the record has {len(steps_record)} steps, this pipeline {len(self.steps)}")
        entries = walk_steps(self.steps, plan, rng, steps_record)
        m, size = plan.matrix, plan.size
        if plan.m is not None:
            out = F.warp(image, m, size, self._interp, self._border, self.fill, self.preshrink)
        else:
            out = image
        for step, values in plan.photo:
            out = step.apply(out, values)
        if out is image:
            out = image.copy()
        out_pts = vis = None
        if pts is not None:
            out_pts = G.apply_points(m, pts)
            if plan.flips % 2 and self.scheme is not None:
                out_pts = out_pts[self.scheme.perm]
            x, y = out_pts[:, 0], out_pts[:, 1]
            vis = (x >= -0.5) & (x <= size[0] - 0.5) & (y >= -0.5) & (y <= size[1] - 0.5)   # NaN: not visible
        record = {"in": [w, h], "out": [size[0], size[1]], "M": matrix_entry(m), "flips": plan.flips,
                  "steps": entries}
        if self.points_unordered:
            record["unordered"] = True
        return Result(out, out_pts, vis, record, self)


def _plain_list(value):
    try:
        return [int(v) if float(v) == int(v) else float(v) for v in value]
    except (TypeError, ValueError, OverflowError):
        return value


def _check_box(box) -> tuple:
    try:
        b = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        b = ()
    if len(b) != 4 or not np.isfinite(b).all() or not (b[2] > b[0] and b[3] > b[1]):
        raise InputError(f"box must be four finite numbers (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {box!r}")
    return b


def _check_fill(fill):
    if isinstance(fill, (int, float)) and not isinstance(fill, bool):
        return fill
    if isinstance(fill, np.number):
        return fill.item()
    if isinstance(fill, (tuple, list, np.ndarray)) and 1 <= len(fill) <= 4 and all(
            isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in fill):
        return tuple(float(v) for v in fill)
    raise InputError(f"Compose: fill must be a number or a tuple of 1-4 numbers (one per channel), got {fill!r}")


def walk_steps(steps, plan: Plan, rng, record):
    """Run ``steps`` in order into ``plan``; ``record`` is their entries on a replay, else None."""
    if record is None:
        return [s.walk(plan, rng) for s in steps]
    return [s.walk(plan, rng, r, replay=True) for s, r in zip(steps, record)]
