"""Landmark schemes: how many points, which ones swap on a horizontal flip, and which pair of
points normalises the error (inter-ocular distance for faces).

Built in: ``ibug68`` (iBUG / 300-W 68 points). Any other comes from a YAML or JSON file::

    name: my_layout
    n_points: 5
    flip_pairs: [[0, 1], [3, 4]]
    norm: [0, 1]          # optional: NME divides by the distance between these two points
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Scheme", "get_scheme", "IBUG68", "BUILTIN", "mirror_error", "infer_pairs"]


def _index(value, what: str, where: str) -> int:
    """A point index: a whole number (36 or 36.0); anything else (36.5, "a", True) is refused."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        return int(value)
    raise ValueError(f"{where}: {what} has index {value!r}, expected a whole number (no silent truncation)")


@dataclass(frozen=True)
class Scheme:
    """A landmark layout. ``perm[i]`` is the index that point ``i`` becomes after a flip."""

    name: str
    n_points: int
    flip_pairs: tuple = ()
    norm: tuple | None = None
    builtin: bool = field(default=False, compare=False)

    def __post_init__(self):
        where = f"scheme {self.name!r}"
        if not isinstance(self.n_points, (int, np.integer)) or self.n_points <= 0:
            raise ValueError(f"{where}: n_points must be a positive integer, got {self.n_points!r}")
        seen = set()
        pairs = []
        for pair in self.flip_pairs:
            if len(pair) != 2:
                raise ValueError(f"{where}: each flip pair must be two indices, got {pair!r}")
            a, b = (_index(v, f"flip pair {list(pair)!r}", where) for v in pair)
            for i in (a, b):
                if not 0 <= i < self.n_points:
                    raise ValueError(f"{where}: flip pair {pair!r} has index {i} outside 0..{self.n_points - 1}")
                if i in seen:
                    raise ValueError(f"{where}: index {i} appears in more than one flip pair")
                seen.add(i)
            if a == b:
                raise ValueError(f"{where}: flip pair {pair!r} pairs a point with itself")
            pairs.append((a, b))
        object.__setattr__(self, "flip_pairs", tuple(pairs))
        if self.norm is not None:
            norm = tuple(_index(i, f"norm {list(self.norm)!r}", where) for i in self.norm)
            if len(norm) != 2 or not all(0 <= i < self.n_points for i in norm):
                raise ValueError(f"{where}: norm must be two point indices in 0..{self.n_points - 1}, "
                                 f"got {list(self.norm)!r}")
            object.__setattr__(self, "norm", norm)
        perm = np.arange(self.n_points)
        for a, b in pairs:
            perm[a], perm[b] = b, a
        perm.setflags(write=False)
        object.__setattr__(self, "_perm", perm)

    @property
    def perm(self) -> np.ndarray:
        """Flip permutation (an involution): flipped points = mirrored points[perm]."""
        return self._perm

    def to_dict(self) -> dict:
        d = {"name": self.name, "n_points": int(self.n_points), "flip_pairs": [list(p) for p in self.flip_pairs]}
        if self.norm is not None:
            d["norm"] = list(self.norm)
        return d

    def save(self, path: str) -> None:
        """Write as YAML (or JSON for a .json path), atomically."""
        from .config import atomic_write_text, dump_yaml
        text = json.dumps(self.to_dict(), indent=1) if str(path).endswith(".json") else dump_yaml(self.to_dict())
        atomic_write_text(path, text)


_IBUG_PAIRS = (
    [(i, 16 - i) for i in range(8)]                       # jaw
    + [(17 + i, 26 - i) for i in range(5)]                # brows
    + [(31, 35), (32, 34)]                                # nose
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]  # mouth
)
IBUG68 = Scheme("ibug68", 68, tuple(_IBUG_PAIRS), norm=(36, 45), builtin=True)
BUILTIN = {"ibug68": IBUG68}


def scheme_from_dict(d, where: str = "scheme") -> Scheme:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping with n_points and flip_pairs, got {type(d).__name__}")
    missing = {"n_points"} - set(d)
    if missing:
        raise ValueError(f"{where}: missing field(s) {sorted(missing)}")
    unknown = set(d) - {"name", "n_points", "flip_pairs", "norm"}
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; expected name, n_points, flip_pairs, norm")
    try:
        return Scheme(str(d.get("name", "custom")), d["n_points"], tuple(tuple(p) for p in d.get("flip_pairs") or ()),
                      tuple(d["norm"]) if d.get("norm") is not None else None)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from None


def get_scheme(spec) -> Scheme:
    """A Scheme from a Scheme, a built-in name, a dict, or a YAML/JSON file path."""
    if isinstance(spec, Scheme):
        return spec
    if isinstance(spec, dict):
        return scheme_from_dict(spec)
    if isinstance(spec, (str, os.PathLike)):
        s = str(spec)
        if s in BUILTIN:
            return BUILTIN[s]
        if os.path.isfile(s):
            from .config import read_yaml
            return scheme_from_dict(read_yaml(s), s)
        raise ValueError(f"unknown scheme {s!r}: expected a built-in name ({', '.join(BUILTIN)}) "
                         "or the path of a YAML/JSON scheme file")
    raise TypeError(f"scheme must be a name, a file path, a dict or a Scheme, got {type(spec).__name__}")


def _normalise(shape: np.ndarray) -> np.ndarray:
    """Centre a (K, 2) shape and scale it to unit RMS radius."""
    c = shape - shape.mean(axis=0)
    return c / np.sqrt((c ** 2).sum(axis=1).mean())


def _best_mirror(shape: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """The reflection of ``shape`` (row i: the mirror image of point i) across the line through the
    origin that best lands each point i on point perm[i], in the least-squares sense."""
    # reflections across a line through the centroid: x' = R(2a) diag(1, -1) x; fit the angle
    x, y = shape[:, 0], shape[:, 1]
    tx, ty = shape[perm, 0], shape[perm, 1]
    # reflected (x, y) = (cos t x + sin t y, sin t x - cos t y); maximise sum of dot with target
    a = (tx * x - ty * y).sum()
    b = (tx * y + ty * x).sum()
    t = np.arctan2(b, a)
    c, s = np.cos(t), np.sin(t)
    return np.stack([c * x + s * y, s * x - c * y], axis=1)


def mirror_error(mean_shape, scheme: Scheme | None = None, perm=None) -> float:
    """How badly the flip pairs mirror a mean shape: mean distance between each point and its
    partner's mirror image, for the best mirror line, in units of the shape's RMS radius."""
    shape = _normalise(np.asarray(mean_shape, dtype=np.float64))
    if perm is None:
        perm = np.arange(len(shape)) if scheme is None else scheme.perm
    mirrored = _best_mirror(shape, perm)
    return float(np.linalg.norm(mirrored - shape[perm], axis=1).mean())


def infer_pairs(mean_shape, iterations: int = 10) -> tuple[list[tuple[int, int]], float]:
    """Find flip pairs from a mean shape: mirror it, match points optimally (Hungarian), refit the
    mirror line to the matching, repeat. Returns the pairs and the final mirror error.

    Points matched to themselves lie on the midline; a matching that is not symmetric (i -> j but
    j -> k) is resolved by keeping only mutual matches.
    """
    from scipy.optimize import linear_sum_assignment

    shape = _normalise(np.asarray(mean_shape, dtype=np.float64))
    n = len(shape)
    # start from the vertical mirror line through the centroid (faces are upright on average)
    mirrored = shape * np.array([-1.0, 1.0])
    perm = np.arange(n)
    for _ in range(iterations):
        cost = np.linalg.norm(shape[:, None, :] - mirrored[None, :, :], axis=2)
        # cost[i, j]: point i against the mirror image of point j; point j flips onto index i
        rows, cols = linear_sum_assignment(cost)
        new = np.empty(n, dtype=int)
        new[cols] = rows
        if np.array_equal(new, perm):
            break
        perm = new
        mirrored = _best_mirror(shape, perm)  # refit the mirror line to this matching
    pairs = sorted({(min(i, int(j)), max(i, int(j))) for i, j in enumerate(perm) if j != i and perm[j] == i})
    final = np.arange(n)
    for a, b in pairs:
        final[a], final[b] = b, a
    return pairs, mirror_error(shape, perm=final)
