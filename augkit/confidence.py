"""How certain a pairing is, part by part: each part's mirrored error with the chosen flip pairs
against its nearest alternatives (a chain of consecutive points shifted by one sample either way,
or reversed; a point in no chain with its next-best partner). ``augkit scheme check`` and
``augkit scheme infer`` print it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .symmetry import (_best_mirror, _normalise, _remap, find_chains, infer_pairs, mirror_error,
                       point_errors)

__all__ = ["pairing_confidence", "PartMargin", "infer_scheme", "margin_lines", "unsure", "CERTAIN_MARGIN"]

# a part is "certain" when its nearest alternative mirrors the data at least this much worse
# (relative increase of the RMS mirrored error of its points); below it the margin is "thin"
CERTAIN_MARGIN = 0.05


def _chain_candidates(chain_a, chain_b, same: bool):
    """Every consistent mapping of chain a onto chain b: ``(s, c, ka, kb)`` with sample ka of a
    paired with sample kb = c + s ka of b (mod len(b) on a loop; out-of-range samples unpaired)."""
    (a, _), (b, closed) = chain_a, chain_b
    n, m = len(a), len(b)
    k = np.arange(n)
    for s in (1, -1):
        if same and s == 1:
            yield s, 0, k, k          # the chain is on the midline: every point its own partner
            continue
        offsets = range(m) if closed else range(-(n - 1) if s == 1 else 0, m if s == 1 else n + m - 1)
        for c in offsets:
            kb = c + s * k
            if closed:
                kb = kb % m
                ok = np.ones(n, bool)
            else:
                ok = (kb >= 0) & (kb < m)
            if ok.sum() * 2 < min(n, m):  # fewer than half overlap: not a mapping of this chain
                continue
            yield s, c, k[ok], kb[ok]


@dataclass(frozen=True)
class PartMargin:
    """How certain a part's pairs are: the RMS mirrored error of its points with the chosen pairs
    (``error``) and with the nearest alternative (``alt_error``, ``alternative`` names it), and
    ``margin`` = alt_error / error - 1 (negative: the alternative mirrors the data better)."""

    name: str
    points: int
    error: float
    alternative: str
    alt_error: float

    @property
    def margin(self) -> float:
        return self.alt_error / max(self.error, 1e-12) - 1.0

    @property
    def verdict(self) -> str:
        if self.margin < 0:
            return "wrong"
        return "certain" if self.margin >= CERTAIN_MARGIN else "thin"


def _present_mapping(perm, chains, i, chain_of):
    """The chain that chain i's points are matched into now, and the mapping ``kb = c + s ka``
    that fits the present partners best (None when fewer than two are in one chain)."""
    a, _ = chains[i]
    hit = chain_of[perm[a]]
    if not (hit >= 0).any():
        return None
    j = int(np.bincount(hit[hit >= 0]).argmax())
    b, closed = chains[j]
    pos = np.full(len(perm), -1)
    pos[b] = np.arange(len(b))
    ka = np.nonzero(pos[perm[a]] >= 0)[0]
    if len(ka) < 2:
        return None
    kb = pos[perm[a][ka]]
    if j == i and np.array_equal(kb, ka):
        return j, 1, 0
    s = -1 if j == i else (1 if np.median(np.diff(kb)) * np.median(np.diff(ka)) > 0 else -1)
    if closed:  # the offset on a loop: the most common one
        return j, s, int(np.bincount((kb - s * ka) % len(b)).argmax())
    return j, s, int(np.round(np.median(kb - s * ka)))


def _alternatives(shape, perm, chains, i, chain_of):
    """A chain's nearest alternatives to its present mapping: its partners shifted by one sample
    either way, and the mapping reversed (the best offset of the other direction); for a chain on
    the midline, paired up with itself at the best offset."""
    present = _present_mapping(perm, chains, i, chain_of)
    if present is None:
        return []
    j, s, c = present
    a = chains[i][0]
    b, closed = chains[j]
    same = j == i
    wanted = {}
    if not (same and s == 1):
        wanted = {(s, (c + 1) % len(b) if closed else c + 1): "shifted +1",
                  (s, (c - 1) % len(b) if closed else c - 1): "shifted -1"}
    out, other, other_err = [], None, np.inf
    for cs, cc, ka, kb in _chain_candidates(chains[i], chains[j], same):
        if (cs, cc) in wanted:
            out.append((wanted[(cs, cc)], _remap(perm, a, a[ka], b[kb])))
        elif cs == -s or (same and s == 1 and cs == -1):
            cand = _remap(perm, a, a[ka], b[kb])
            e = mirror_error(shape, perm=cand)
            if e < other_err:
                other, other_err = cand, e
    if other is not None:
        out.append(("paired up" if same and s == 1 else "reversed", other))
    return out


def pairing_confidence(mean_shape, perm, parts=None) -> list[PartMargin]:
    """Per part (``parts``: ``((name, (low, high)), ...)``; default: one part per chain, and the
    points in no chain together): the chosen pairing's mirrored error over the part's points
    against its nearest alternative's (any of its chains shifted by one sample either way or
    reversed; for points in no chain, each point paired with its next-best partner instead)."""
    shape = _normalise(np.asarray(mean_shape, dtype=np.float64))
    n = len(shape)
    perm = np.asarray(perm)
    part_of = np.full(n, -1)
    names = []
    chains = find_chains(shape, None)
    if parts:
        for k, (name, (lo, hi)) in enumerate(parts):
            part_of[lo:hi + 1] = k
            names.append(name)
        chains = [(idx[part_of[idx] == part_of[idx[0]]], closed) for idx, closed in find_chains(shape, part_of)]
    else:
        for k, (idx, _) in enumerate(chains):
            part_of[idx] = k
            names.append(f"chain {idx[0]}-{idx[-1]}")
    loose = part_of < 0
    if loose.any():
        part_of[loose] = len(names)
        names.append("points in no chain" if not parts else "points in no part")
    chain_of = np.full(n, -1)
    for i, (idx, _) in enumerate(chains):
        chain_of[idx] = i
    base = point_errors(shape, perm)
    out = []
    for k, name in enumerate(names):
        members = part_of == k
        if not members.any():
            continue
        best_name, best_err = "none", np.inf
        for i, (idx, _) in enumerate(chains):
            if part_of[idx[0]] != k:
                continue
            for alt_name, alt in _alternatives(shape, perm, chains, i, chain_of):
                e = _rms(point_errors(shape, alt)[members])
                if e < best_err:
                    best_name, best_err = f"{alt_name} ({_label(idx)})", float(e)
        in_chain = chain_of >= 0
        for pt in np.nonzero(members & ~in_chain)[0]:
            e = _next_partner_error(shape, perm, pt, base)
            alt_err = np.sqrt(((base[members] ** 2).sum() - base[pt] ** 2 + e ** 2) / members.sum())
            if alt_err < best_err:
                best_name, best_err = f"point {pt} with its next-best partner", float(alt_err)
        out.append(PartMargin(name, int(members.sum()), _rms(base[members]), best_name, best_err))
    return out


def _rms(e) -> float:
    return float(np.sqrt((np.asarray(e) ** 2).mean()))


def _label(idx) -> str:
    return f"{idx[0]}-{idx[-1]}"


def _next_partner_error(shape, perm, i, base) -> float:
    """Point i's mirrored error with the second-best partner for the present mirror line."""
    mirrored = _best_mirror(shape, perm)
    d = np.linalg.norm(shape - mirrored[i], axis=1)
    d[perm[i]] = np.inf
    return float(d.min())


def infer_scheme(mean_shape, name: str = "inferred", parts=(), mirror_parts=(), norm=None):
    """A complete scheme from a mean shape: the inferred pairs (inside ``parts`` when given), the
    parts and the norm points, with the confidence of each part. Returns ``(scheme, error,
    margins)``: the mirrored error and a :class:`PartMargin` per part (per chain without parts)."""
    from .schemes import Scheme
    shape = np.asarray(mean_shape, dtype=np.float64)
    base = Scheme(name, len(shape), (), norm, tuple(parts), tuple(mirror_parts))
    names = [p for p, _ in base.parts]
    mirrors = [(names.index(a), names.index(b)) for a, b in base.mirror_parts]
    pairs, err = infer_pairs(shape, parts=base.part_index() if base.parts else None, mirror_parts=mirrors)
    scheme = Scheme(name, len(shape), tuple(pairs), base.norm, base.parts, base.mirror_parts)
    return scheme, err, pairing_confidence(shape, scheme.perm, scheme.parts or None)


def margin_lines(margins) -> list[str]:
    """A small table of :class:`PartMargin` rows, one line each, and a verdict line."""
    w = max([len(m.name) for m in margins] + [4])
    lines = [f"{'part':<{w}}  points  RMS error  nearest alternative (its RMS error)  margin  verdict"]
    for m in margins:
        lines.append(f"{m.name:<{w}}  {m.points:>6}  {m.error:>9.4f}  {m.alternative} ({m.alt_error:.4f})"
                     f"  {m.margin:+.0%}  {m.verdict}")
    return lines


def unsure(margins) -> list:
    """The parts whose pairs are not certain (margin below CERTAIN_MARGIN)."""
    return [m for m in margins if m.verdict != "certain"]
