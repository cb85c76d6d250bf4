"""Containers that choose: ``OneOf`` (one of several steps) and ``Sometimes`` (a step or none).

Each owns its structure (``children``), its walk (``contribute``) and its dict form
(``from_args``); ``Compose`` (a sequence, in :mod:`augkit.compose`) is the third container. A new
container is one more ``Step`` subclass written the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from augkit.errors import InputError
from .steps import Step, step_from_dict, steps_from_dicts

__all__ = ["OneOf", "Sometimes", "check_steps"]


def check_steps(steps, owner: str) -> list:
    """The steps of a container as a list; anything that is not an augkit step is refused."""
    steps = list(steps)
    for i, s in enumerate(steps):
        if not isinstance(s, Step):
            raise TypeError(f"{owner}: step {i} must be an augkit step, got {type(s).__name__}"
                            " (wrap an albumentations image-only transform in ak.Photometric)")
    return steps


def steps_arg(args: dict, kind: str, where: str) -> dict:
    """``args`` with its ``steps`` list of dicts built into steps (the dict form of a container)."""
    steps = args.get("steps")
    if not isinstance(steps, list):
        raise InputError(f"{where}: {kind} needs a 'steps' list")  # noqa: TRY004 - bad file content: ValueError, as callers expect
    return {**args, "steps": steps_from_dicts(steps, f"{where}.steps")}


class OneOf(Step):
    """Run one of ``steps``, chosen with probabilities proportional to ``weights``."""

    def __init__(self, steps, weights=None, p=1.0):
        super().__init__(p)
        self.steps = check_steps(steps, "OneOf")
        if not self.steps:
            raise InputError("OneOf needs at least one step")
        w = np.ones(len(self.steps)) if weights is None else np.asarray(weights, dtype=float)
        if w.shape != (len(self.steps),) or (w < 0).any() or w.sum() <= 0 or not np.isfinite(w).all():
            raise InputError(f"OneOf: weights must be {len(self.steps)} non-negative numbers with a "
                             f"positive sum, got {weights!r}")
        self.weights = None if weights is None else [float(x) for x in w]
        self._cum = np.cumsum(w)  # choice: first index whose cumulative weight exceeds u * total

    def children(self) -> tuple:
        return tuple(self.steps)

    @property
    def deterministic(self) -> bool:
        return self.p in (0.0, 1.0) and (self.p == 0.0 or (
            len(self.steps) == 1 and self.steps[0].deterministic))

    def choose(self, rng) -> int:
        """The index of the step a call runs."""
        if len(self.steps) == 1:
            return 0
        u = rng.random() * self._cum[-1]
        return min(int(np.searchsorted(self._cum, u, side="right")), len(self.steps) - 1)

    def contribute(self, plan, rng, entry):
        if entry is None:
            i = self.choose(rng)
            return {"choice": i, "value": self.steps[i].walk(plan, rng)}
        if not isinstance(entry, dict) or "choice" not in entry or not 0 <= entry["choice"] < len(self.steps):
            raise InputError(f"the record does not fit this pipeline: expected a OneOf entry "
                             f"{{'choice': 0..{len(self.steps) - 1}, 'value': ...}}, got {entry!r}")
        i = entry["choice"]
        return {"choice": i, "value": self.steps[i].walk(plan, rng, entry["value"], replay=True)}

    @classmethod
    def from_args(cls, args, where):
        return cls(**steps_arg(args, "OneOf", where))

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"type": "OneOf", "steps": [s.to_dict() for s in self.steps]}
        if self.weights is not None:
            d["weights"] = self.weights
        if self.p != 1.0:
            d["p"] = self.p
        return d


class Sometimes(Step):
    """Run ``step`` with probability ``p`` (the same as setting the step's own ``p``, for trees)."""

    def __init__(self, step, p=0.5):
        super().__init__(p)
        self.step = check_steps([step], "Sometimes")[0]

    def children(self) -> tuple:
        return (self.step,)

    @property
    def deterministic(self) -> bool:
        return self.p in (0.0, 1.0) and (self.p == 0.0 or self.step.deterministic)

    def contribute(self, plan, rng, entry):
        return self.step.walk(plan, rng, entry, replay=entry is not None)

    @classmethod
    def from_args(cls, args, where):
        if "step" not in args:
            raise InputError(f"{where}: Sometimes needs a 'step'")
        return cls(**{**args, "step": step_from_dict(args["step"], f"{where}.step")})

    def to_dict(self) -> dict:
        return {"type": "Sometimes", "step": self.step.to_dict(), "p": self.p}
