"""Landmark schemes: how many points, which ones swap on a horizontal flip, and which pair of
points normalises the error (inter-ocular distance for faces).

Built in: ``ibug68`` (iBUG / 300-W 68 points). Any other comes from a YAML or JSON file::

    name: my_layout
    n_points: 5
    flip_pairs: [[0, 1], [3, 4]]
    norm: [0, 1]          # optional: NME divides by the distance between these two points
    parts:                # optional: named index ranges (inclusive); no flip pair crosses two parts
      left: [0, 1]        #   unless the two parts are listed together in mirror_parts
      mid: [2, 2]
      right: [3, 4]
    mirror_parts: [[left, right]]

Built in as well: ``made971``, the Thousand Facial Landmarks layout (971 points in six parts, no
published pairs: ``augkit scheme infer --scheme made971`` completes it from data), and the layouts
of the public benchmarks with their published flip pairs (HRNet-Facial-Landmark-Detection's
``MATCHED_PARTS``, the same pairs as mmpose's dataset configs):

- ``wflw98``: WFLW, 98 points. ``norm`` the outer eye corners 60, 72 (the benchmark's
  inter-ocular NME), ``pupils`` 96, 97 (inter-pupil NME).
- ``cofw29``: COFW, 29 points. ``norm`` 8, 9 (the outer eye corners: HRNet's and mmpose's
  "inter-ocular" NME), ``pupils`` 16, 17 (the inter-pupil NME of the RCPR protocol).
- ``aflw19``: AFLW-19, 19 points. ``box_norm``: the benchmark divides by the face box size
  (HRNet's ``box_size``, else ``sqrt(w * h)`` of the box); ``norm`` 6, 11 (outer eye corners) is
  the NME used where no box is known, ``pupils`` 7, 10 (the eye centres).

Two optional fields say how a benchmark normalises besides ``norm``: ``pupils`` (two point
indices, or two lists of indices averaged into the eye centres: the inter-pupil NME) and
``box_norm`` (true: the face box size). ``ibug68``'s pupils are the centres of its six points
around each eye (36-41, 42-47), the 300-W inter-pupil convention.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field

import numpy as np

from augkit.errors import InputError
from .files import atomic_write_text, dump_yaml, read_yaml

__all__ = ["AFLW19", "BUILTIN", "COFW29", "IBUG68", "MADE971", "WFLW98", "Scheme", "get_scheme", "parse_parts",
           "pupil_centres"]


def _index(value, what: str, where: str) -> int:
    """A point index: a whole number (36 or 36.0); anything else (36.5, "a", True) is refused."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        return int(value)
    raise InputError(f"{where}: {what} has index {value!r}, expected a whole number (no silent truncation)")


def _pupils(value, n_points: int, where: str) -> tuple:
    """``pupils``: two point indices, or two groups of indices whose means are the pupils (the eye
    centres of a layout without pupil points, e.g. 300-W's six points around each eye)."""
    bad = InputError(f"{where}: pupils must be two point indices, or two lists of point indices (each eye's "
                     f"points, averaged), in 0..{n_points - 1} and not shared, got {value!r}")
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise bad
    out: list = []
    for g in value:
        if isinstance(g, (list, tuple, np.ndarray)):
            group = tuple(_index(i, f"pupils {value!r}", where) for i in g)
            if not group or len(set(group)) != len(group):
                raise bad
            out.append(group[0] if len(group) == 1 else group)
        else:
            out.append(_index(g, f"pupils {value!r}", where))
    flat = [i for g in out for i in ((g,) if isinstance(g, int) else g)]
    if not all(0 <= i < n_points for i in flat) or len(set(flat)) != len(flat):
        raise bad
    return tuple(out)


def pupil_centres(points, pupils) -> tuple:
    """The two pupil positions of ``points`` (..., K, 2) by a scheme's ``pupils`` (indices or groups
    of indices, averaged). Shapes: (..., 2) each."""
    p = np.asarray(points, np.float64)
    return tuple(p[..., g, :] if isinstance(g, int) else p[..., list(g), :].mean(axis=-2) for g in pupils)


@dataclass(frozen=True)
class Scheme:
    """A landmark layout. ``perm[i]`` is the index that point ``i`` becomes after a flip."""

    name: str
    n_points: int
    flip_pairs: tuple = ()
    norm: tuple | None = None
    parts: tuple = ()
    mirror_parts: tuple = ()
    pupils: tuple | None = None
    box_norm: bool = False
    builtin: bool = field(default=False, compare=False)
    _perm: np.ndarray = field(init=False, repr=False, compare=False)   # set in __post_init__

    def __post_init__(self):
        where = f"scheme {self.name!r}"
        if not isinstance(self.n_points, (int, np.integer)) or self.n_points <= 0:
            raise InputError(f"{where}: n_points must be a positive integer, got {self.n_points!r}")
        seen = set()
        pairs = []
        for pair in self.flip_pairs:
            if len(pair) != 2:
                raise InputError(f"{where}: each flip pair must be two indices, got {pair!r}")
            a, b = (_index(v, f"flip pair {list(pair)!r}", where) for v in pair)
            for i in (a, b):
                if not 0 <= i < self.n_points:
                    raise InputError(f"{where}: flip pair {pair!r} has index {i} outside 0..{self.n_points - 1}")
                if i in seen:
                    raise InputError(f"{where}: index {i} appears in more than one flip pair")
                seen.add(i)
            if a == b:
                raise InputError(f"{where}: flip pair {pair!r} pairs a point with itself")
            pairs.append((a, b))
        object.__setattr__(self, "flip_pairs", tuple(pairs))
        if self.norm is not None:
            norm = tuple(_index(i, f"norm {list(self.norm)!r}", where) for i in self.norm)
            if len(norm) != 2 or not all(0 <= i < self.n_points for i in norm):
                raise InputError(f"{where}: norm must be two point indices in 0..{self.n_points - 1}, "
                                 f"got {list(self.norm)!r}")
            object.__setattr__(self, "norm", norm)
        if self.pupils is not None:
            object.__setattr__(self, "pupils", _pupils(self.pupils, self.n_points, where))
        if not isinstance(self.box_norm, (bool, np.bool_)):
            raise InputError(f"{where}: box_norm must be true or false, got {self.box_norm!r}")
        object.__setattr__(self, "box_norm", bool(self.box_norm))
        self._check_parts(where)
        perm = np.arange(self.n_points)
        for a, b in pairs:
            perm[a], perm[b] = b, a
        perm.setflags(write=False)
        object.__setattr__(self, "_perm", perm)

    def _check_parts(self, where: str) -> None:
        """Parts: named, in range, not overlapping; mirror_parts name two parts; no pair crosses
        two parts unless they are mirrors of each other."""
        parts = []
        for item in (self.parts.items() if isinstance(self.parts, dict) else self.parts):
            name, rng = item
            lo, hi = (_index(v, f"part {name!r}", where) for v in rng)
            if not 0 <= lo <= hi < self.n_points:
                raise InputError(f"{where}: parts: {name!r} is {lo}-{hi}, expected a range low-high inside "
                                 f"0..{self.n_points - 1}")
            parts.append((str(name), (lo, hi)))
        names = [n for n, _ in parts]
        if len(set(names)) != len(names):
            raise InputError(f"{where}: parts: the name {next(n for n in names if names.count(n) > 1)!r} is used twice")
        order = sorted(parts, key=lambda p: p[1])
        for (n1, (_, h1)), (n2, (l2, _)) in itertools.pairwise(order):
            if l2 <= h1:
                raise InputError(f"{where}: parts: {n1!r} and {n2!r} overlap (index {l2}); each point belongs "
                                 "to one part")
        object.__setattr__(self, "parts", tuple(parts))
        mirrors = []
        for m in self.mirror_parts:
            if len(m) != 2 or not all(str(x) in names for x in m) or m[0] == m[1]:
                raise InputError(f"{where}: mirror_parts: {list(m)!r} must name two different parts "
                                 f"(parts: {', '.join(names) or 'none'})")
            mirrors.append((str(m[0]), str(m[1])))
        object.__setattr__(self, "mirror_parts", tuple(mirrors))
        if not parts:
            return
        of = self.part_index()
        allowed = {frozenset((names.index(a), names.index(b))) for a, b in mirrors}
        for a, b in self.flip_pairs:
            if of[a] != of[b] and frozenset((of[a], of[b])) not in allowed:
                where_a = names[of[a]] if of[a] >= 0 else "no part"
                where_b = names[of[b]] if of[b] >= 0 else "no part"
                raise InputError(f"{where}: flip_pairs: pair [{a}, {b}] crosses two parts ({where_a} and {where_b}); "
                                 "list them in mirror_parts if one is the other's mirror")

    def part_index(self) -> np.ndarray:
        """The part of each point as an index into ``parts`` (-1: in no part). Shape: (K,)."""
        of = np.full(self.n_points, -1)
        for i, (_, (lo, hi)) in enumerate(self.parts):
            of[lo:hi + 1] = i
        return of

    @property
    def perm(self) -> np.ndarray:
        """Flip permutation (an involution): flipped points = mirrored points[perm]."""
        return self._perm

    def to_dict(self) -> dict:
        d = {"name": self.name, "n_points": int(self.n_points), "flip_pairs": [list(p) for p in self.flip_pairs]}
        if self.norm is not None:
            d["norm"] = list(self.norm)
        if self.parts:
            d["parts"] = {name: [lo, hi] for name, (lo, hi) in self.parts}
        if self.mirror_parts:
            d["mirror_parts"] = [list(m) for m in self.mirror_parts]
        if self.pupils is not None:
            d["pupils"] = [g if isinstance(g, int) else list(g) for g in self.pupils]
        if self.box_norm:
            d["box_norm"] = True
        return d

    def save(self, path: str) -> None:
        """Write as YAML (or JSON for a .json path), atomically."""
        text = json.dumps(self.to_dict(), indent=1) if str(path).endswith(".json") else dump_yaml(self.to_dict())
        atomic_write_text(path, text)


_IBUG_PAIRS = (
    [(i, 16 - i) for i in range(8)]                       # jaw
    + [(17 + i, 26 - i) for i in range(5)]                # brows
    + [(31, 35), (32, 34)]                                # nose
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]  # mouth
)
IBUG68 = Scheme("ibug68", 68, tuple(_IBUG_PAIRS), norm=(36, 45), pupils=(tuple(range(36, 42)), tuple(range(42, 48))),
                builtin=True,
                parts=(("jaw", (0, 16)), ("eyebrows", (17, 26)), ("nose", (27, 35)), ("eyes", (36, 47)),
                       ("mouth", (48, 67))))
# the Thousand Facial Landmarks layout, by parts (a competitor's notebook); the pairs were never
# published: ``augkit scheme infer --scheme made971`` fills them in from data. NME: the pupils.
MADE971 = Scheme("made971", 971, (), norm=(969, 970), builtin=True,
                 parts=(("contour", (0, 272)), ("eyebrows", (273, 400)), ("nose", (401, 586)),
                        ("eyes", (587, 840)), ("mouth", (841, 968)), ("pupils", (969, 970))))
# WFLW, 98 points: HRNet-Facial-Landmark-Detection lib/utils/transforms.py MATCHED_PARTS["WFLW"]
# (0-based; the same swaps as mmpose's configs/_base_/datasets/wflw.py). On the axis: 16 (chin),
# 51-54 (nose bridge), 57 (below the nose tip), 79, 85, 90, 94 (the lips' middle).
_WFLW_PAIRS = (
    [(i, 32 - i) for i in range(16)]                                              # contour
    + [(33 + i, 46 - i) for i in range(5)] + [(38 + i, 50 - i) for i in range(4)]  # brows: top, bottom
    + [(55, 59), (56, 58)]                                                        # nose
    + [(60 + i, 72 - i) for i in range(5)] + [(65 + i, 75 - i) for i in range(3)]  # eyes
    + [(76, 82), (77, 81), (78, 80), (87, 83), (86, 84), (88, 92), (89, 91), (95, 93)]  # mouth
    + [(96, 97)]                                                                  # pupils
)
WFLW98 = Scheme("wflw98", 98, tuple(_WFLW_PAIRS), norm=(60, 72), pupils=(96, 97), builtin=True,
                parts=(("contour", (0, 32)), ("eyebrows", (33, 50)), ("nose", (51, 59)), ("eyes", (60, 75)),
                       ("mouth", (76, 95)), ("pupils", (96, 97))))
# COFW, 29 points: HRNet's MATCHED_PARTS["COFW"] made 0-based (= mmpose's configs/_base_/datasets/
# cofw.py swaps). On the axis: 20, 21 (nose), 24-27 (lips), 28 (chin).
_COFW_PAIRS = ((0, 1), (2, 3), (4, 6), (5, 7), (8, 9), (10, 11), (12, 14), (13, 15), (16, 17), (18, 19), (22, 23))
COFW29 = Scheme("cofw29", 29, _COFW_PAIRS, norm=(8, 9), pupils=(16, 17), builtin=True,
                parts=(("eyebrows", (0, 7)), ("eyes", (8, 17)), ("nose", (18, 21)), ("mouth", (22, 27)),
                       ("chin", (28, 28))))
# AFLW-19: HRNet's MATCHED_PARTS["AFLW"] made 0-based (= mmpose's configs/_base_/datasets/aflw.py).
# On the axis: 13 (nose tip), 16 (mouth centre), 18 (chin).
_AFLW_PAIRS = ((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 14), (15, 17))
AFLW19 = Scheme("aflw19", 19, _AFLW_PAIRS, norm=(6, 11), pupils=(7, 10), box_norm=True, builtin=True,
                parts=(("eyebrows", (0, 5)), ("eyes", (6, 11)), ("nose", (12, 14)), ("mouth", (15, 17)),
                       ("chin", (18, 18))))
BUILTIN = {"ibug68": IBUG68, "made971": MADE971, "wflw98": WFLW98, "cofw29": COFW29, "aflw19": AFLW19}


def parse_parts(text: str, where: str = "--parts") -> tuple:
    """``"contour:0-272,brows:273-400"`` -> ``(("contour", (0, 272)), ("brows", (273, 400)))``."""
    parts = []
    for item in filter(None, (t.strip() for t in str(text).split(","))):
        name, sep, rng = item.partition(":")
        lo, dash, hi = rng.strip().partition("-")
        if not sep or not name.strip() or not dash or not lo.strip().isdigit() or not hi.strip().isdigit():
            raise InputError(f"{where}: {item!r} is not NAME:LOW-HIGH (e.g. contour:0-272)")
        parts.append((name.strip(), (int(lo), int(hi))))
    if not parts:
        raise InputError(f"{where}: no parts given; expected NAME:LOW-HIGH[,NAME:LOW-HIGH...]")
    return tuple(parts)


def _parts_field(value, where: str) -> tuple:
    """The ``parts`` field of a scheme file: a mapping name -> [low, high] or "low-high"."""
    if not isinstance(value, dict):
        raise InputError(f"{where}: parts must be a mapping name -> [low, high], got {type(value).__name__}")  # noqa: TRY004 - bad file content: ValueError, as callers expect
    out: list[tuple[str, tuple]] = []
    for name, rng in value.items():
        if isinstance(rng, str):
            out.extend(parse_parts(f"{name}:{rng}", f"{where}: parts"))
        elif isinstance(rng, (list, tuple)) and len(rng) == 2:
            out.append((str(name), tuple(rng)))
        else:
            raise InputError(f"{where}: parts: {name!r} is {rng!r}, expected [low, high] (inclusive)")
    return tuple(out)


def scheme_from_dict(d, where: str = "scheme") -> Scheme:
    if not isinstance(d, dict):
        raise InputError(f"{where}: expected a mapping with n_points and flip_pairs, got {type(d).__name__}")  # noqa: TRY004 - bad file content: ValueError, as callers expect
    missing = {"n_points"} - set(d)
    if missing:
        raise InputError(f"{where}: missing field(s) {sorted(missing)}")
    fields = ("name", "n_points", "flip_pairs", "norm", "parts", "mirror_parts", "pupils", "box_norm")
    unknown = set(d) - set(fields)
    if unknown:
        raise InputError(f"{where}: unknown field(s) {sorted(unknown)}; expected {', '.join(fields)}")
    try:
        return Scheme(str(d.get("name", "custom")), d["n_points"], tuple(tuple(p) for p in d.get("flip_pairs") or ()),
                      tuple(d["norm"]) if d.get("norm") is not None else None,
                      _parts_field(d["parts"], where) if d.get("parts") is not None else (),
                      tuple(tuple(m) for m in d.get("mirror_parts") or ()),
                      tuple(d["pupils"]) if d.get("pupils") is not None else None, d.get("box_norm", False))
    except (TypeError, ValueError) as e:
        raise InputError(f"{where}: {e}") from None


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
            return scheme_from_dict(read_yaml(s), s)
        raise InputError(f"unknown scheme {s!r}: expected a built-in name ({', '.join(BUILTIN)}) "
                         "or the path of a YAML/JSON scheme file")
    raise TypeError(f"scheme must be a name, a file path, a dict or a Scheme, got {type(spec).__name__}")
