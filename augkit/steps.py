"""The step protocol: what every pipeline step owns, the plan a call fills, and the registry.

Each step answers for its own structure, so the pipeline asks and never switches on types:

- ``children()``: the steps inside it (empty for a leaf; containers list theirs);
- ``flips`` (a leaf that mirrors) and ``may_flip`` (some step of the subtree mirrors);
- ``fixed_flips()``: how many flips a fixed (deterministic) step makes, from its structure;
- ``walk(plan, rng, entry, replay)``: decide whether it runs (``p``), then ``contribute`` to the
  plan: a geometric leaf multiplies its matrix in, a photometric leaf queues itself, a container
  walks its children; the return value is the step's record entry;
- ``from_args(args, where)``: build from the arguments of the dict form; containers turn their
  children's dicts into steps. Every subclass is registered by its class name, so
  ``step_from_dict`` needs no list of types.

A new step or container is one class: nothing else needs an edit.
"""

from __future__ import annotations

import numpy as np

from augkit.errors import InputError
from . import geometry as G
from ._checks import Range, check_p

__all__ = ["REGISTRY", "GeometricStep", "PhotometricStep", "Plan", "Step", "step_from_dict"]

REGISTRY: dict[str, type[Step]] = {}


def _plain(value):
    """Tuples to lists, numpy scalars to Python: what YAML and JSON take."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class Plan:
    """What one walk of the step tree collects: the fused matrix, the frame size, the flips and
    the queued photometric steps; it carries the call's points and box through the geometry."""

    __slots__ = ("box", "flips", "m", "photo", "points", "size")

    def __init__(self, size, points=None, box=None):
        self.m = None  # no geometry yet: the identity
        self.size = size
        self.flips = 0
        self.photo = []
        self.points = points
        self.box = box

    def add_geometry(self, m: np.ndarray, size: tuple[int, int], flips: bool) -> None:
        """Multiply a step's matrix (on the current frame) in; ``size`` is the new frame."""
        self.m = m if self.m is None else m @ self.m
        if not G.is_affine(self.m):   # projective: the scale fixed by m[2, 2] = 1 where it can be
            self.m = G.normalised(self.m)
        self.size = size
        if flips:
            self.flips += 1

    def add_photometric(self, step, values) -> None:
        """Queue a photometric step: it runs on the warped image, in order."""
        self.photo.append((step, values))

    @property
    def matrix(self) -> np.ndarray:
        """The fused 3x3 matrix so far (the identity before any geometry)."""
        return np.eye(3) if self.m is None else self.m

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


class Step:
    """Base of every pipeline step.

    Subclasses call ``super().__init__(p, **args)`` with their constructor arguments, so that
    ``to_dict`` can rebuild them; they list their magnitudes in ``self.ranges``.
    """

    geometric = False
    flips = False  # True for a leaf that mirrors the image (its points then swap left/right)
    random_values = False  # True for steps that draw more than their ranges (noise, positions, seeds)
    record_keys: tuple[str, ...] | None = None  # the keys a record entry must have; None: the names of the ranges

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if not cls.__dict__.get("_abstract", False):
            REGISTRY[cls.__name__] = cls

    def __init__(self, p: float = 1.0, **args):
        self.p = check_p(p, type(self).__name__)
        self._args = {k: _plain(v) for k, v in args.items()}
        self.ranges: dict[str, Range] = {}

    def _range(self, name: str, value, minimum=None, maximum=None) -> Range:
        r = Range(value, name, type(self).__name__, minimum, maximum)
        self.ranges[name] = r
        return r

    # ------------------------------------------------------------------ structure
    def children(self) -> tuple:
        """The steps inside this one (a leaf has none)."""
        return ()

    @property
    def may_flip(self) -> bool:
        """True when this step or one inside it flips (the points then need a scheme)."""
        return self.flips or any(c.may_flip for c in self.children())

    def fixed_flips(self) -> int:
        """How many flips a call of this fixed step makes, read from the structure (no image run).

        The default counts the step's own flip and each child's once; a container that runs a
        child more than once (or picks among several) says so by overriding it.

        Raises:
            ValueError: the step draws random values, so the count is not fixed.
        """
        if not self.deterministic:
            raise InputError(f"{type(self).__name__} draws random values: how often it flips is not fixed")
        if self.p == 0.0:
            return 0
        return int(self.flips) + sum(c.fixed_flips() for c in self.children())

    @property
    def deterministic(self) -> bool:
        """True when the step never draws: p is 0, or p is 1 and every value is fixed (a TTA view)."""
        return self.p == 0.0 or (self.p == 1.0 and not self.random_values
                                 and all(r.fixed for r in self.ranges.values()))

    # ------------------------------------------------------------------ one call
    def draw(self, rng, size: tuple[int, int]) -> dict:
        """The values of one call, drawn from ``rng`` (``size`` is the current (w, h))."""
        return {name: r.draw(rng) for name, r in self.ranges.items()}

    def walk(self, plan: Plan, rng, entry=None, replay: bool = False):
        """Run this step into ``plan`` and return its record entry (``None``: it did not run).

        Drawing (``replay`` False) decides with ``p`` and draws from ``rng``; replaying takes the
        values of the record ``entry`` (``None`` there means the step did not run).
        """
        if replay:
            if entry is None:
                return None
        elif self.p < 1.0 and (self.p <= 0.0 or rng.random() >= self.p):
            return None
        return self.contribute(plan, rng, entry if replay else None)

    def contribute(self, plan: Plan, rng, entry):
        """The step's effect on ``plan`` once it runs; ``entry`` is the recorded values on a replay,
        ``None`` when drawing. Returns the values to record."""
        raise NotImplementedError(f"{type(self).__name__} does not say what it does to a call")

    def _values(self, plan: Plan, rng, entry) -> dict:
        """The leaf's values: the checked record entry on a replay, else a fresh draw."""
        if entry is None:
            return self.draw(rng, plan.size)
        check_entry(self, entry)
        return entry

    # ------------------------------------------------------------------ dict form
    @classmethod
    def from_args(cls, args: dict, where: str) -> Step:
        """Build from the dict form's arguments (every key but ``type``); containers override it
        to build their children. A ``TypeError`` here is reported as bad arguments."""
        return cls(**args)

    def to_dict(self) -> dict:
        d = {"type": type(self).__name__, **self._args}
        if self.p != 1.0:
            d["p"] = self.p
        return d

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "type")
        return f"{type(self).__name__}({args})"


class GeometricStep(Step):
    """A step that moves pixels: a 3x3 matrix on the current frame plus an output size."""

    _abstract = True
    geometric = True
    binds = False  # True for steps whose values depend on the call's data (see bind)

    def bind(self, values: dict, points, box) -> dict:
        """Values that also depend on the call's data (a box, the current points); a replay
        finds them in its record already. Default: none."""
        return values

    def matrix(self, values: dict, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
        """``(M, (w, h))`` for the current frame ``size``."""
        raise NotImplementedError

    def contribute(self, plan, rng, entry):
        values = self._values(plan, rng, entry)
        if self.binds:
            values = self.bind(values, plan.current_points(), plan.current_box())
        m, size = self.matrix(values, plan.size)
        plan.add_geometry(m, size, self.flips)
        return values


class PhotometricStep(Step):
    """A step that changes pixel values only; points are left alone."""

    _abstract = True

    def apply(self, image: np.ndarray, values: dict) -> np.ndarray:
        """A new image (never the input modified in place)."""
        raise NotImplementedError

    def contribute(self, plan, rng, entry):
        values = self._values(plan, rng, entry)
        plan.add_photometric(self, values)
        return values


def check_entry(step: Step, entry) -> None:
    """Refuse a record entry that lacks the step's values or holds one outside its limits."""
    keys = step.record_keys if step.record_keys is not None else step.ranges
    if not isinstance(entry, dict) or not set(keys) <= set(entry):
        raise InputError(f"the record does not fit this pipeline: {type(step).__name__} needs values "
                         f"{sorted(keys)}, got {entry!r}")
    for name, r in step.ranges.items():
        if name in entry and not r.admits(entry[name]):
            raise InputError(f"the record's {type(step).__name__} value {name}={entry[name]!r} is out of the "
                             f"step's limits: expected {r.limits()}")


def steps_from_dicts(items, where: str) -> list:
    """A list of steps from a list of their dict forms; ``where`` names the list in errors."""
    return [step_from_dict(s, f"{where}[{i}]") for i, s in enumerate(items)]


def step_from_dict(d, where: str) -> Step:
    """One step from its dict form (looked up by ``type`` in the registry); errors say where in the
    file the bad entry is."""
    if not isinstance(d, dict) or "type" not in d:
        raise InputError(f"{where}: expected a mapping with a 'type' key, got {d!r}")
    kind = d["type"]
    cls = REGISTRY.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise InputError(f"{where}: unknown step type {kind!r}; known: {', '.join(sorted(REGISTRY))}")
    args = {k: v for k, v in d.items() if k != "type"}
    try:
        return cls.from_args(args, where)
    except TypeError as e:
        raise InputError(f"{where}: bad arguments for {kind}: {e}") from None
