"""Compose / OneOf / Sometimes: sampling, fusion into one warp, the record, replay and invert.

A call walks the tree of steps once. Geometric steps multiply into one 3x3 matrix (and count
flips); photometric steps are queued with their values. Then the image is warped ONCE into the
final frame and the queued photometric steps run on the result, in order. Points move by the same
matrix and, after an odd number of flips, by the scheme's left/right permutation.

The record of a call is a small JSON-serialisable dict::

    {"in": [w, h], "out": [w, h], "M": [[a, b, c], [d, e, f]], "flips": n, "steps": [...]}

where ``steps`` holds, per step, ``None`` (did not run) or the values it ran with (a OneOf:
``{"choice": i, "value": ...}``; a nested Compose: a list).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import functional as F
from . import geometry as G
from ._checks import check_image, check_points
from .schemes import Scheme, get_scheme
from .transforms import REGISTRY, GeometricStep, Step

__all__ = ["Compose", "OneOf", "Sometimes", "Result", "invert_points"]


class OneOf(Step):
    """Run one of ``steps``, chosen with probabilities proportional to ``weights``."""

    def __init__(self, steps, weights=None, p=1.0):
        super().__init__(p)
        self.steps = _check_steps(steps, "OneOf")
        if not self.steps:
            raise ValueError("OneOf needs at least one step")
        w = np.ones(len(self.steps)) if weights is None else np.asarray(weights, dtype=float)
        if w.shape != (len(self.steps),) or (w < 0).any() or w.sum() <= 0 or not np.isfinite(w).all():
            raise ValueError(f"OneOf: weights must be {len(self.steps)} non-negative numbers with a "
                             f"positive sum, got {weights!r}")
        self.weights = None if weights is None else [float(x) for x in w]
        self._cum = np.cumsum(w)  # choice: first index whose cumulative weight exceeds u * total

    @property
    def deterministic(self) -> bool:
        return self.p in (0.0, 1.0) and (self.p == 0.0 or (
            len(self.steps) == 1 and self.steps[0].deterministic))

    def to_dict(self) -> dict:
        d = {"type": "OneOf", "steps": [s.to_dict() for s in self.steps]}
        if self.weights is not None:
            d["weights"] = self.weights
        if self.p != 1.0:
            d["p"] = self.p
        return d


class Sometimes(Step):
    """Run ``step`` with probability ``p`` (the same as setting the step's own ``p``, for trees)."""

    def __init__(self, step, p=0.5):
        super().__init__(p)
        self.step = _check_steps([step], "Sometimes")[0]

    @property
    def deterministic(self) -> bool:
        return self.p in (0.0, 1.0) and (self.p == 0.0 or self.step.deterministic)

    def to_dict(self) -> dict:
        return {"type": "Sometimes", "step": self.step.to_dict(), "p": self.p}


def _check_steps(steps, owner: str) -> list:
    steps = list(steps)
    for i, s in enumerate(steps):
        if not isinstance(s, Step):
            raise TypeError(f"{owner}: step {i} must be an augkit step, got {type(s).__name__}"
                            " (wrap an albumentations image-only transform in ak.Photometric)")
    return steps


@dataclass
class Result:
    """The output of one pipeline call.

    Shape: ``image`` (h, w[, C]); ``points`` (K, 2) or None; ``visible`` (K,) bool or None.
    """

    image: np.ndarray
    points: np.ndarray | None
    visible: np.ndarray | None
    record: dict
    pipeline: "Compose" = field(repr=False)

    @property
    def matrix(self) -> np.ndarray:
        """The fused 3x3 matrix, input frame -> output frame."""
        return _matrix(self.record)

    def invert(self, points) -> np.ndarray:
        """Output frame -> input frame, flip permutation undone. Shape: (..., K, 2)."""
        return self.pipeline.invert(self.record, points)


def _matrix(record: dict) -> np.ndarray:
    """The record's ``M`` as a 3x3 matrix; a clear error when the field is missing or malformed."""
    if not isinstance(record, dict):
        raise ValueError(f"a record must be the dict of a pipeline call, got {type(record).__name__}")
    if "M" not in record:
        raise ValueError("the record has no field 'M' (the fused 2x3 matrix of the call): expected the record "
                         "of a pipeline call")
    try:
        m2 = np.array(record["M"], dtype=np.float64)
    except (TypeError, ValueError):
        m2 = None
    if m2 is None or m2.shape != (2, 3) or not np.isfinite(m2).all():
        shown = repr(record["M"])
        raise ValueError(f"the record's field 'M' must be a 2x3 matrix of finite numbers, got "
                         f"{shown[:80] + '...' if len(shown) > 80 else shown}")
    m = np.eye(3)
    m[:2] = m2
    return m


def _flips(record: dict) -> int:
    flips = record.get("flips")
    if isinstance(flips, bool) or not isinstance(flips, (int, np.integer)) or flips < 0:
        raise ValueError(f"the record's field 'flips' must be a non-negative whole number, got {flips!r}")
    return int(flips)


def invert_points(record: dict, points, scheme: Scheme | str | None = None) -> np.ndarray:
    """Map points from a record's output frame back to its input frame.

    The fused matrix is inverted exactly; after an odd number of flips the scheme's left/right
    permutation is applied again (it is its own inverse). A new array is returned.

    Shape: ``points`` (..., K, 2) -> (..., K, 2).
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim < 2 or p.shape[-1] != 2:
        raise ValueError(f"points to invert must have shape (..., K, 2), got {p.shape}")
    m = _matrix(record)
    if abs(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]) < 1e-12:
        raise ValueError(f"the record's field 'M' is singular ({record['M']!r}): its points cannot be mapped back")
    if _flips(record) % 2:
        if scheme is None:
            if not record.get("unordered"):
                raise ValueError("this record holds a flip: pass the scheme that swaps left/right points")
        else:
            scheme = get_scheme(scheme)
            if p.shape[-2] != scheme.n_points:
                raise ValueError(f"points have {p.shape[-2]} rows, the scheme {scheme.name!r} has {scheme.n_points}")
            p = p[..., scheme.perm, :]
    return G.apply_points(G.invert(m), p)


class _Plan:
    """What one walk of the tree collects."""

    __slots__ = ("m", "size", "flips", "photo", "points", "box")

    def __init__(self, size, points, box):
        self.m = None  # no geometry yet: the identity
        self.size = size
        self.flips = 0
        self.photo = []
        self.points = points
        self.box = box

    def current_box(self):
        """The call's box carried through the geometry so far: bounding box of its corners."""
        if self.box is None or self.m is None:
            return self.box
        x0, y0, x1, y1 = self.box
        c = G.apply_points(self.m, np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], dtype=np.float64))
        (a, b), (c_, d) = c.min(axis=0), c.max(axis=0)
        return (float(a), float(b), float(c_), float(d))

    def current_points(self):
        if self.points is None or self.m is None:
            return self.points
        return G.apply_points(self.m, self.points)


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
        self.steps = _check_steps(steps, "Compose")
        self.scheme = None if scheme is None else get_scheme(scheme)
        self.points_unordered = bool(points_unordered)
        self.border_mode, self.fill, self.interpolation = border_mode, _check_fill(fill), interpolation
        if not 0.0 <= float(preshrink) < 1.0:
            raise ValueError(f"Compose: preshrink must be in [0, 1), got {preshrink!r}")
        self.preshrink = float(preshrink)
        self._border = F.border_flag(border_mode)
        self._interp = F.interpolation_flag(interpolation)
        self._flips_unordered = self.scheme is None and not self.points_unordered and _has_flip(self.steps)

    # ------------------------------------------------------------------ public surface
    @property
    def deterministic(self) -> bool:
        return self.p in (0.0, 1.0) and all(s.deterministic for s in self.steps)

    def __call__(self, image, points=None, rng: np.random.Generator | None = None, box=None) -> Result:
        if rng is None and not self.deterministic:
            raise ValueError("this pipeline draws random values: pass rng=np.random.default_rng(seed)")
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
            raise ValueError("replay needs the record of a call of this pipeline (a dict with 'steps')")
        image = check_image(image)
        size = [image.shape[1], image.shape[0]]
        if "in" in record and _plain_list(record["in"]) != size:
            raise ValueError(f"the record's field 'in' is {record['in']!r} but the image is {size} (w, h): a record "
                             "replays on an image of the size it was made on")
        result = self._run(image, points, None, record["steps"], box)
        if "flips" in record and _flips(record) != result.record["flips"]:
            raise ValueError(f"the record's field 'flips' is {record['flips']!r} but its steps flip "
                             f"{result.record['flips']} time(s): the record was edited or belongs to another pipeline")
        if "M" in record and box is None:
            recorded, recomputed = _matrix(record)[:2], result.matrix[:2]
            if not np.allclose(recorded, recomputed, rtol=1e-9, atol=1e-6):
                raise ValueError(f"the record's field 'M' {np.round(recorded, 4).tolist()} does not match the "
                                 f"matrix its step values give, {np.round(recomputed, 4).tolist()}: the record was "
                                 "edited or belongs to another pipeline")
        return result

    @property
    def can_flip(self) -> bool:
        """True when some step of the tree flips (the points then need a scheme)."""
        return _has_flip(self.steps)

    def plan(self, size: tuple[int, int], rng: np.random.Generator | None = None, box=None):
        """The geometry of one call on an image of ``size = (w, h)``, without touching pixels.

        Returns ``(M, (w, h), flips)``: the fused 3x3 matrix, the output size and the number of
        flips. Draws from ``rng`` exactly as a call would (required unless deterministic).
        """
        if rng is None and not self.deterministic:
            raise ValueError("this pipeline draws random values: pass rng=np.random.default_rng(seed)")
        plan = _Plan((int(size[0]), int(size[1])), None, None if box is None else _check_box(box))
        _walk_list(self.steps, rng, plan, None)
        return (np.eye(3) if plan.m is None else plan.m), plan.size, plan.flips

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
    def from_dict(cls, d: dict) -> "Compose":
        """Rebuild a pipeline from ``to_dict`` output (or a hand-written YAML dict)."""
        step = step_from_dict(d, "pipeline")
        if not isinstance(step, Compose):
            step = Compose([step])
        return step

    # ------------------------------------------------------------------ the walk
    def _run(self, image, points, rng, steps_record, box) -> Result:
        image = check_image(image)
        h, w = image.shape[:2]
        pts = None
        if points is not None:
            if self._flips_unordered:
                raise ValueError("this pipeline flips, but has no scheme to swap left/right landmark indices: "
                                 "pass scheme='ibug68' (or a scheme file), or points_unordered=True if the "
                                 "points carry no left/right identity")
            pts = check_points(points, None if self.scheme is None else self.scheme.n_points,
                               None if self.scheme is None else self.scheme.name)
        if box is not None:
            box = _check_box(box)
        plan = _Plan((w, h), pts, box)
        if steps_record is not None and len(steps_record) != len(self.steps):
            raise ValueError(f"the record has {len(steps_record)} steps, this pipeline {len(self.steps)}")
        entries = _walk_list(self.steps, rng, plan, steps_record)
        m, size = (np.eye(3) if plan.m is None else plan.m), plan.size
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
            vis = (x >= -0.5) & (x <= size[0] - 0.5) & (y >= -0.5) & (y <= size[1] - 0.5)
        record = {"in": [w, h], "out": [size[0], size[1]], "M": m[:2].tolist(), "flips": plan.flips,
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
        raise ValueError(f"box must be four finite numbers (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {box!r}")
    return b


def _check_fill(fill):
    if isinstance(fill, (int, float)) and not isinstance(fill, bool):
        return fill
    if isinstance(fill, np.number):
        return fill.item()
    if isinstance(fill, (tuple, list, np.ndarray)) and 1 <= len(fill) <= 4 and all(
            isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in fill):
        return tuple(float(v) for v in fill)
    raise ValueError(f"Compose: fill must be a number or a tuple of 1-4 numbers (one per channel), got {fill!r}")


def _has_flip(steps) -> bool:
    for s in steps:
        if getattr(s, "flips", False):
            return True
        if isinstance(s, (Compose, OneOf)) and _has_flip(s.steps):
            return True
        if isinstance(s, Sometimes) and _has_flip([s.step]):
            return True
    return False


def _walk_list(steps, rng, plan, record):
    if record is None:
        return [_walk(s, rng, plan, None, False) for s in steps]
    return [_walk(s, rng, plan, r, True) for s, r in zip(steps, record)]


def _walk(step, rng, plan, entry, replay: bool):
    """Run one step of the tree into ``plan``; return its record entry."""
    if replay:
        if entry is None:
            return None
    else:
        p = step.p
        if p < 1.0 and (p <= 0.0 or rng.random() >= p):
            return None
    if step.geometric:
        if replay:
            _check_entry(step, entry)
        values = entry if replay else step.draw(rng, plan.size)
        if step.binds:
            values = step.bind(values, plan.current_points(), plan.current_box())
        m, size = step.matrix(values, plan.size)
        plan.m = m if plan.m is None else m @ plan.m
        plan.size = size
        if step.flips:
            plan.flips += 1
        return values
    if isinstance(step, OneOf):
        if replay:
            if not isinstance(entry, dict) or "choice" not in entry or not 0 <= entry["choice"] < len(step.steps):
                raise ValueError(f"the record does not fit this pipeline: expected a OneOf entry "
                                 f"{{'choice': 0..{len(step.steps) - 1}, 'value': ...}}, got {entry!r}")
            i = entry["choice"]
            return {"choice": i, "value": _walk(step.steps[i], rng, plan, entry["value"], True)}
        if len(step.steps) == 1:
            i = 0
        else:
            i = min(int(np.searchsorted(step._cum, rng.random() * step._cum[-1], side="right")), len(step.steps) - 1)
        return {"choice": i, "value": _walk(step.steps[i], rng, plan, None, False)}
    if isinstance(step, Sometimes):
        return _walk(step.step, rng, plan, entry, replay)
    if isinstance(step, Compose):
        if replay and (not isinstance(entry, list) or len(entry) != len(step.steps)):
            raise ValueError(f"the record does not fit this pipeline: expected a list of {len(step.steps)} "
                             f"entries for a nested Compose, got {entry!r}")
        return _walk_list(step.steps, rng, plan, entry if replay else None)
    if replay:
        _check_entry(step, entry)
    values = entry if replay else step.draw(rng, plan.size)
    plan.photo.append((step, values))
    return values


def _check_entry(step, entry) -> None:
    keys = step.record_keys if step.record_keys is not None else step.ranges
    if not isinstance(entry, dict) or not set(keys) <= set(entry):
        raise ValueError(f"the record does not fit this pipeline: {type(step).__name__} needs values "
                         f"{sorted(keys)}, got {entry!r}")
    for name, r in step.ranges.items():
        if name in entry and not r.admits(entry[name]):
            raise ValueError(f"the record's {type(step).__name__} value {name}={entry[name]!r} is out of the "
                             f"step's limits: expected {r.limits()}")


def step_from_dict(d, where: str) -> Step:
    """One step from its dict form; errors say where in the file the bad entry is."""
    if not isinstance(d, dict) or "type" not in d:
        raise ValueError(f"{where}: expected a mapping with a 'type' key, got {d!r}")
    kind = d["type"]
    args = {k: v for k, v in d.items() if k != "type"}
    if kind in ("Compose", "OneOf"):
        steps = args.pop("steps", None)
        if not isinstance(steps, list):
            raise ValueError(f"{where}: {kind} needs a 'steps' list")
        args["steps"] = [step_from_dict(s, f"{where}.steps[{i}]") for i, s in enumerate(steps)]
        cls = Compose if kind == "Compose" else OneOf
    elif kind == "Sometimes":
        if "step" not in args:
            raise ValueError(f"{where}: Sometimes needs a 'step'")
        args["step"] = step_from_dict(args["step"], f"{where}.step")
        cls = Sometimes
    elif kind in REGISTRY:
        cls = REGISTRY[kind]
    else:
        known = ", ".join(sorted(set(REGISTRY) | {"Compose", "OneOf", "Sometimes"}))
        raise ValueError(f"{where}: unknown step type {kind!r}; known: {known}")
    try:
        return cls(**args)
    except TypeError as e:
        raise ValueError(f"{where}: bad arguments for {kind}: {e}") from None

