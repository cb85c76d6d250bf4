"""TTA views and specs: fixed augkit pipelines plus weights, presets, and the YAML spec file.

A view is a deterministic ``augkit.Compose`` (scalar magnitudes, ``p`` 0 or 1) applied to the
MODEL-INPUT image (after preprocessing). View pipelines carry no scheme; the predictor passes the
model's scheme to ``augkit.invert_points`` so that flip views swap left/right indices back.

Spec file (YAML or JSON)::

    name: my-tta                # optional
    merge: mean                 # mean (weighted) | median | trimmed | sigma | robust | sigma+robust
    trim: 0.2                   # trimmed only: fraction cut at EACH end, in [0, 0.5)
    sigma_scale: 1.0            # optional: calibration factor of every model σ (`augkit tta fit --calibrate`)
    preset: flip                # optional: start from a preset's views ...
    views:                      # ... and/or list views (appended after the preset's)
      - name: identity
        steps: []
        weight: 1.0             # optional, default 1
      - name: hflip-rot5
        steps: [{type: HFlip}, {type: Affine, rotate: 5}]
    weights:                    # optional; written by `augkit tta fit`, overrides the view weights
      kind: per_view            # per_view | per_landmark
      models: [a.pt, b.pt]      # the ensemble members the weights are for (model-major order)
      values: [0.3, 0.2, ...]   # per_view: models*views numbers; per_landmark: models*views lists of K
    fit:                        # optional, written by `augkit tta fit`: what it chose and why (not used)
      merge: sigma              #   the chosen merge (none = the identity view alone)
      cv_mse: {none: 4.1, plain: 3.9, ...}   # cross-validated MSE per candidate, original pixels

Weights are non-negative and are normalised to sum to one (per landmark) when merging. ``sigma``,
``robust`` and ``sigma+robust`` (see :mod:`augkit.tta.merge`) start from the same static weights;
``sigma`` and ``sigma+robust`` need models that report σ (``has_sigma``). Files without
``sigma_scale`` (or written before the σ merges) load unchanged, with ``sigma_scale`` 1.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from augkit.errors import InputError
from augkit.compose import Compose
from augkit.files import atomic_write_text, dump_yaml, read_yaml
from augkit.geometric import Affine, HFlip
from augkit.steps import steps_from_dicts

from .merge import MERGES, SIGMA_MERGES, WEIGHTED_MERGES

__all__ = [
    "PRESETS",
    "SpecError",
    "TTASpec",
    "View",
    "get_spec",
    "load_spec",
    "preset_views",
    "save_spec",
    "spec_from_dict",
    "spec_to_dict",
]

MERGE_METHODS = MERGES



class SpecError(InputError):
    """A TTA spec (file or dict) that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class View:
    """One TTA view: a deterministic pipeline on the model-input image and its weight."""

    name: str
    pipeline: Compose
    weight: float = 1.0

    @classmethod
    def from_steps(cls, name: str, steps, weight: float = 1.0) -> View:
        """A view from augkit steps (no scheme needed: the predictor supplies it)."""
        return cls(name, Compose(list(steps), points_unordered=True), float(weight))

    @property
    def flips(self) -> bool:
        """True when the view mirrors the image (an odd number of flips): its inverse must swap
        left/right landmark indices, so it needs a scheme. Read from the pipeline's own structure
        (a fixed view knows how often it flips); no image is run.

        Raises:
            ValueError: the view's pipeline draws random values (not a fixed view).
        """
        return self.pipeline.fixed_flips() % 2 == 1

    def key(self) -> str:
        """A canonical string of the pipeline (equal views share a key)."""
        return json.dumps(self.pipeline.to_dict(), sort_keys=True)

    def to_dict(self) -> dict:
        return {"name": self.name, "steps": [s.to_dict() for s in self.pipeline.steps], "weight": self.weight}


@dataclass
class TTASpec:
    """A TTA setting: views, how to merge them, and optional fitted weights.

    ``weights`` (when set) holds one weight per ensemble member (models x views, model-major),
    shape ``(members,)``, or one per member and landmark, shape ``(members, K)``; ``models``
    names the models the weights were fitted for. ``sigma_scale``: the factor every model σ is
    multiplied by (a calibration, ``augkit tta fit --calibrate``); positive and finite.
    """

    views: list
    merge: str = "mean"
    trim: float = 0.2
    name: str = "custom"
    weights: np.ndarray | None = None
    models: list | None = None
    source: str | None = field(default=None, compare=False)
    sigma_scale: float = 1.0
    fit: dict | None = field(default=None, compare=False)

    def __post_init__(self):
        where = self.source or "spec"
        if not self.views:
            raise SpecError(f"{where}: views: at least one view is needed")
        for i, v in enumerate(self.views):
            if not isinstance(v, View):
                raise SpecError(f"{where}: views[{i}]: expected a View, got {type(v).__name__}")
        if self.merge not in MERGE_METHODS:
            raise SpecError(f"{where}: merge: must be one of {', '.join(MERGE_METHODS)}, got {self.merge!r}")
        if not (0.0 <= float(self.trim) < 0.5):
            raise SpecError(f"{where}: trim: must be a fraction in [0, 0.5), got {self.trim!r}")
        if self.weights is not None:
            w = np.asarray(self.weights, dtype=np.float64)
            if w.ndim not in (1, 2) or w.shape[0] % len(self.views) or not np.isfinite(w).all() or (w < 0).any():
                raise SpecError(f"{where}: weights: expected non-negative numbers, one per member "
                                f"(a multiple of the {len(self.views)} views), got shape {w.shape}")
            self.weights = w
        scale = self.sigma_scale
        if not _positive_finite(scale):
            raise SpecError(f"{where}: sigma_scale: must be a positive finite number, got {scale!r}")
        self.sigma_scale = float(scale)

    @property
    def needs_sigma(self) -> bool:
        """True when the merge needs the models' σ (``sigma``, ``sigma+robust``)."""
        return self.merge in SIGMA_MERGES

    @property
    def uses_weights(self) -> bool:
        """True when the merge starts from the static weights (all but ``median`` / ``trimmed``)."""
        return self.merge in WEIGHTED_MERGES

    @property
    def view_weights(self) -> np.ndarray:
        return np.array([v.weight for v in self.views], dtype=np.float64)

    def member_weights(self, n_models: int, n_points: int) -> np.ndarray:
        """Weights of all ``n_models x len(views)`` members per landmark, normalised to sum to one.

        Shape: ``(n_models * V, n_points)``.
        """
        where = self.source or "spec"
        n = n_models * len(self.views)
        if self.weights is None:
            w = np.tile(self.view_weights, n_models)[:, None].repeat(n_points, axis=1)
        else:
            w = self.weights
            if w.shape[0] != n:
                raise SpecError(f"{where}: weights: fitted for {w.shape[0] // len(self.views)} model(s) x "
                                f"{len(self.views)} views, but {n_models} model(s) are used")
            if w.ndim == 1:
                w = w[:, None].repeat(n_points, axis=1)
            elif w.shape[1] != n_points:
                raise SpecError(f"{where}: weights: per-landmark weights for {w.shape[1]} landmarks, "
                                f"the model predicts {n_points}")
        s = w.sum(axis=0)
        if (s <= 0).any():
            raise SpecError(f"{where}: weights: all weights of a landmark are zero")
        return w / s


# ----------------------------------------------------------------------------------- presets

def _affine(rotate=0.0, scale=1.0, shift=0.0):
    return Affine(rotate=rotate, scale=scale, translate=shift) if (rotate or scale != 1.0 or shift) else None


def _grid(flips=(False, True), rotations=(0.0,), scales=(1.0,), shifts=(0.0,)) -> list:
    views = []
    for flip in flips:
        for rot in rotations:
            for sc in scales:
                for sh in shifts:
                    steps, parts = [], []
                    a = _affine(rot, sc, sh)
                    if a is not None:
                        steps.append(a)
                    if flip:
                        steps.append(HFlip())
                        parts.append("hflip")
                    if rot:
                        parts.append(f"rot{rot:+g}")
                    if sc != 1.0:
                        parts.append(f"scale{sc:g}")
                    if sh:
                        parts.append(f"shift{sh:+g}")
                    views.append(View.from_steps("+".join(parts) or "identity", steps))
    return views


PRESETS = {
    "none": lambda: _grid(flips=(False,)),
    "flip": lambda: _grid(),
    "flip-rot": lambda: _grid(rotations=(0.0, -6.0, 6.0)),
    "flip-scale": lambda: _grid(scales=(1.0, 0.94, 1.06)),
    "full": lambda: _grid(rotations=(0.0, -6.0, 6.0), scales=(1.0, 1.06), shifts=(0.0, 0.03)),
}
PRESET_HELP = ("none (identity), flip (identity + mirror), flip-rot (x rotations 0/-6/+6 deg), "
               "flip-scale (x scales 1/0.94/1.06), full (flips x rotations 0/-6/+6 x scales 1/1.06 x "
               "shifts 0/+3% = 24 views)")


def preset_views(name: str) -> list:
    """The views of a preset: ``none``, ``flip``, ``flip-rot``, ``flip-scale`` or ``full``."""
    if name not in PRESETS:
        raise SpecError(f"unknown TTA preset {name!r}: expected one of {', '.join(PRESETS)} or a spec file path")
    return PRESETS[name]()


# -------------------------------------------------------------------------------- spec files

_SPEC_KEYS = {"name", "merge", "trim", "preset", "views", "weights", "sigma_scale", "fit"}
_VIEW_KEYS = {"name", "steps", "weight"}
_WEIGHT_KEYS = {"kind", "models", "values"}


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _positive_finite(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and bool(
        np.isfinite(x) and x > 0)


def spec_from_dict(d, where: str = "spec") -> TTASpec:
    """A ``TTASpec`` from its dict form; every error names ``where`` and the field."""
    if not isinstance(d, dict):
        raise SpecError(f"{where}: expected a mapping with 'views' (and optionally merge, weights), "
                        f"got {type(d).__name__}")
    unknown = set(d) - _SPEC_KEYS
    if unknown:
        raise SpecError(f"{where}: unknown field(s) {sorted(unknown)}; expected {sorted(_SPEC_KEYS)}")
    views = []
    if d.get("preset") is not None:
        try:
            views = preset_views(d["preset"])
        except SpecError as e:
            raise SpecError(f"{where}: preset: {e}") from None
    raw = d.get("views")
    if raw is None and not views:
        raise SpecError(f"{where}: views: missing (give a list of views or a preset)")
    if raw is not None and not isinstance(raw, list):
        raise SpecError(f"{where}: views: expected a list, got {type(raw).__name__}")
    for i, v in enumerate(raw or []):
        vw = f"{where}: views[{i}]"
        if not isinstance(v, dict):
            raise SpecError(f"{vw}: expected a mapping with 'steps' (and name, weight), got {v!r}")
        bad = set(v) - _VIEW_KEYS
        if bad:
            raise SpecError(f"{vw}: unknown field(s) {sorted(bad)}; expected {sorted(_VIEW_KEYS)}")
        steps = v.get("steps", [])
        if not isinstance(steps, list):
            raise SpecError(f"{vw}.steps: expected a list of steps, got {type(steps).__name__}")
        weight = v.get("weight", 1.0)
        if not _number(weight) or not np.isfinite(weight) or weight < 0:
            raise SpecError(f"{vw}.weight: must be a non-negative number, got {weight!r}")
        try:
            built = steps_from_dicts(steps, "steps")
            pipe = Compose(built, points_unordered=True)
        except (ValueError, TypeError) as e:
            raise SpecError(f"{vw}.{e}" if str(e).startswith("steps[") else f"{vw}: {e}") from None
        if not pipe.deterministic:
            raise SpecError(f"{vw}: a TTA view must be fixed (scalar magnitudes, p 0 or 1), but "
                            f"{[s.to_dict() for s in built]} draws random values")
        views.append(View(str(v.get("name", f"view{i}")), pipe, float(weight)))
    merge = d.get("merge", "mean")
    trim = d.get("trim", 0.2)
    if not _number(trim):
        raise SpecError(f"{where}: trim: must be a number, got {trim!r}")
    weights = models = None
    if d.get("weights") is not None:
        weights, models = _weights_from_dict(d["weights"], f"{where}: weights", len(views))
    scale = d.get("sigma_scale", 1.0)
    if not _number(scale):
        raise SpecError(f"{where}: sigma_scale: must be a positive finite number, got {scale!r}")
    fit = d.get("fit")
    if fit is not None and not isinstance(fit, dict):
        raise SpecError(f"{where}: fit: expected a mapping (what `augkit tta fit` chose), got {fit!r}")
    return TTASpec(views, merge=merge, trim=float(trim), name=str(d.get("name", d.get("preset") or "custom")),
                   weights=weights, models=models, source=where, sigma_scale=float(scale), fit=fit)


def _weights_from_dict(w, where: str, n_views: int):
    if isinstance(w, list):
        w = {"values": w}
    if not isinstance(w, dict):
        raise SpecError(f"{where}: expected a mapping with kind, models, values (or a list), got {w!r}")
    bad = set(w) - _WEIGHT_KEYS
    if bad:
        raise SpecError(f"{where}: unknown field(s) {sorted(bad)}; expected {sorted(_WEIGHT_KEYS)}")
    values = w.get("values")
    kind = w.get("kind")
    if kind is not None and kind not in ("per_view", "per_landmark"):
        raise SpecError(f"{where}.kind: must be per_view or per_landmark, got {kind!r}")
    models = w.get("models")
    if models is not None and (not isinstance(models, list) or not models):
        raise SpecError(f"{where}.models: expected a non-empty list of model names, got {models!r}")
    n_models = len(models) if models else None
    if not isinstance(values, list) or not values:
        raise SpecError(f"{where}.values: expected a list of numbers (per view) or of lists (per view "
                        f"and landmark), got {values!r}")
    nested = all(isinstance(x, list) for x in values)
    if nested:
        lengths = {len(x) for x in values}
        if len(lengths) != 1 or not all(_number(y) for x in values for y in x):
            raise SpecError(f"{where}.values: per-landmark weights must be lists of numbers of one length")
    elif not all(_number(x) for x in values):
        raise SpecError(f"{where}.values: expected numbers, got {values!r}")
    if kind == "per_view" and nested or kind == "per_landmark" and not nested:
        raise SpecError(f"{where}.values: kind is {kind} but the values are "
                        f"{'lists' if nested else 'numbers'}")
    arr = np.asarray(values, dtype=np.float64)
    expect = n_views * (n_models or 1)
    if n_models is None and arr.shape[0] % n_views == 0:
        expect = arr.shape[0]
    if arr.shape[0] != expect:
        raise SpecError(f"{where}.values: expected {expect} entries ({n_models or 1} model(s) x {n_views} views), "
                        f"got {arr.shape[0]}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise SpecError(f"{where}.values: weights must be finite and non-negative")
    return arr, models


def spec_to_dict(spec: TTASpec) -> dict:
    d: dict[str, Any] = {"name": spec.name, "merge": spec.merge}
    if spec.merge == "trimmed":
        d["trim"] = spec.trim
    if spec.sigma_scale != 1.0:
        d["sigma_scale"] = float(f"{spec.sigma_scale:.6g}")
    d["views"] = [v.to_dict() for v in spec.views]
    if spec.weights is not None:
        w: dict[str, Any] = {"kind": "per_view" if spec.weights.ndim == 1 else "per_landmark"}
        if spec.models:
            w["models"] = [str(m) for m in spec.models]
        w["values"] = np.round(spec.weights, 6).tolist()
        d["weights"] = w
    if spec.fit:
        d["fit"] = spec.fit
    return d


def load_spec(path) -> TTASpec:
    """Read a spec file (YAML or JSON); errors name the file and the field."""
    path = os.fspath(path)
    try:
        data = read_yaml(path)
    except (FileNotFoundError, ValueError) as e:
        raise SpecError(str(e)) from None
    return spec_from_dict(data, path)


def save_spec(spec: TTASpec, path) -> None:
    """Write a spec as YAML (JSON for a .json path), atomically."""
    d = spec_to_dict(spec)
    text = json.dumps(d, indent=1) if os.fspath(path).endswith(".json") else dump_yaml(d)
    atomic_write_text(path, text)


def get_spec(tta) -> TTASpec:
    """A spec from a preset name, a spec file path, a ``TTASpec``, a list of views, or None (no TTA)."""
    if tta is None:
        return TTASpec(preset_views("none"), name="none")
    if isinstance(tta, TTASpec):
        return tta
    if isinstance(tta, (list, tuple)):
        return TTASpec(list(tta))
    if isinstance(tta, (str, os.PathLike)):
        s = os.fspath(tta)
        if s in PRESETS:
            return TTASpec(preset_views(s), name=s)
        if os.path.exists(s):
            return load_spec(s)
        raise SpecError(f"--tta {s!r}: neither a preset ({', '.join(PRESETS)}) nor an existing spec file")
    raise TypeError(f"tta must be a preset name, a spec path, a TTASpec or a list of views, got {type(tta).__name__}")


def with_weights(spec: TTASpec, weights, models=None, name=None, merge: str = "mean") -> TTASpec:
    """A copy of ``spec`` with fitted weights (the base of ``merge``, by default the weighted mean)."""
    return replace(spec, weights=np.asarray(weights, dtype=np.float64), models=models,
                   name=name or spec.name, merge=merge)
