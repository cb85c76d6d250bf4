"""Left/right structure of a landmark layout, read off a mean shape: how well given flip pairs
mirror it, the pairs that mirror it best, and how certain each part of a pairing is.

The measure everywhere is the **mirrored error**: reflect the (centred, unit RMS radius) mean shape
across the line that best lands each point on its partner, and average the distance between each
point's reflection and its partner. A pairing is a permutation ``perm`` (an involution: ``perm[i]``
is the partner of ``i``, ``perm[i] == i`` on the midline).

Inference (:func:`infer_pairs`) runs in two stages:

1. **matching**: reflect across a candidate mirror line, match every point to a reflected point
   (Hungarian), refit the line to the matching, repeat; a few starting lines, the best kept;
2. **chains**: on dense layouts consecutive indices run along a curve (a jaw line, an eye loop).
   Point-wise matching treats each point alone and, where the mean face is slightly asymmetric,
   slides a chain's partners one sample along its mirror chain: a near-tie it never leaves. Stage 2
   finds the chains, and for each one tries every consistent mapping onto its mirror chain
   (partner of sample ``k`` is sample ``c + s k``, both directions, every offset), keeping the one
   with the lowest mirrored error over the whole shape (the line refit each time).

``augkit.symmetry`` reports, per part, how much better the chosen pairing mirrors the data than
its nearest alternatives (a chain shifted by one sample either way, or reversed).

**Confidence** (:func:`pairing_confidence`): how certain a pairing is, part by part: each part's
mirrored error with the chosen flip pairs against its nearest alternatives (a chain of
consecutive points shifted by one sample either way, or reversed; a point in no chain with its
next-best partner). ``augkit scheme check`` and ``augkit scheme infer`` print it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["mirror_error", "point_errors", "infer_pairs", "find_chains", "perm_from_pairs", "pairs_from_perm",
           "pairing_confidence", "PartMargin", "infer_scheme", "margin_lines", "unsure", "CERTAIN_MARGIN"]


def _normalise(shape: np.ndarray) -> np.ndarray:
    """Centre a (K, 2) shape and scale it to unit RMS radius."""
    c = shape - shape.mean(axis=0)
    return c / np.sqrt((c ** 2).sum(axis=1).mean())


def _reflect(shape: np.ndarray, t: float) -> np.ndarray:
    """Reflection across the line through the origin at angle t/2 (t = 0: the x axis... composed
    with a mirror of y). Row i: the image of point i."""
    x, y = shape[:, 0], shape[:, 1]
    c, s = np.cos(t), np.sin(t)
    return np.stack([c * x + s * y, s * x - c * y], axis=1)


def _best_mirror(shape: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """The reflection of ``shape`` (row i: the mirror image of point i) across the line through the
    origin that best lands each point i on point perm[i], in the least-squares sense."""
    x, y = shape[:, 0], shape[:, 1]
    tx, ty = shape[perm, 0], shape[perm, 1]
    # reflected (x, y) = (cos t x + sin t y, sin t x - cos t y); maximise the sum of dots with the target
    return _reflect(shape, np.arctan2((tx * y + ty * x).sum(), (tx * x - ty * y).sum()))


def point_errors(shape: np.ndarray, perm) -> np.ndarray:
    """Per point: distance between its reflection and its partner, for the best mirror line of
    ``perm``, in units of the shape's RMS radius. Shape: (K, 2) -> (K,)."""
    shape = _normalise(np.asarray(shape, dtype=np.float64))
    perm = np.asarray(perm)
    return np.linalg.norm(_best_mirror(shape, perm) - shape[perm], axis=1)


def mirror_error(mean_shape, scheme=None, perm=None) -> float:
    """How badly the flip pairs mirror a mean shape: mean distance between each point and its
    partner's mirror image, for the best mirror line, in units of the shape's RMS radius."""
    shape = np.asarray(mean_shape, dtype=np.float64)
    if perm is None:
        perm = np.arange(len(shape)) if scheme is None else scheme.perm
    return float(point_errors(shape, perm).mean())


def perm_from_pairs(pairs, n: int) -> np.ndarray:
    perm = np.arange(n)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


def pairs_from_perm(perm) -> list[tuple[int, int]]:
    """The mutual pairs of a matching (i -> j and j -> i), each (low, high), sorted."""
    perm = np.asarray(perm)
    return sorted({(min(i, int(j)), max(i, int(j))) for i, j in enumerate(perm) if j != i and perm[j] == i})


def _allowed(part_of: np.ndarray | None, mirrors=()) -> np.ndarray | None:
    """(K, K) bool: which points may pair (same part, or parts that mirror each other)."""
    if part_of is None:
        return None
    ok = part_of[:, None] == part_of[None, :]
    for a, b in mirrors:
        ok |= (part_of[:, None] == a) & (part_of[None, :] == b)
        ok |= (part_of[:, None] == b) & (part_of[None, :] == a)
    return ok


def _match(shape: np.ndarray, allowed, start: float, iterations: int) -> np.ndarray:
    """Stage 1 from one starting mirror line (angle ``start`` of the line from vertical)."""
    from scipy.optimize import linear_sum_assignment

    n = len(shape)
    mirrored = _reflect(shape, np.pi + 2 * start)  # t = pi: x -> -x, the vertical line
    perm = np.arange(n)
    for _ in range(iterations):
        cost = np.linalg.norm(shape[:, None, :] - mirrored[None, :, :], axis=2)
        if allowed is not None:
            cost[~allowed] = 1e6
        # cost[i, j]: point i against the mirror image of point j; point j flips onto index i
        rows, cols = linear_sum_assignment(cost)
        new = np.empty(n, dtype=int)
        new[cols] = rows
        if np.array_equal(new, perm):
            break
        perm = new
        mirrored = _best_mirror(shape, perm)
    return perm_from_pairs(pairs_from_perm(perm), n)  # keep mutual matches only


def find_chains(shape, part_of: np.ndarray | None = None, min_length: int = 3) -> list[tuple[np.ndarray, bool]]:
    """Runs of consecutive indices that lie along a curve. ``i`` and ``i + 1`` are linked when their
    gap is at most 3.5 times the median of the (up to four) gaps around it: a jump to another curve
    is far longer than the sampling steps on either side, while a curve's own step changes slowly.
    A run whose last point is as close to its first as its steps are is a loop. Parts, when given, end runs.
    Returns ``(indices, closed)`` for runs of ``min_length`` points or more.
    """
    shape = np.asarray(shape, dtype=np.float64)
    n = len(shape)
    if n < min_length:
        return []
    gap = np.linalg.norm(np.diff(shape, axis=0), axis=1)
    padded = np.concatenate([[np.nan, np.nan], gap, [np.nan, np.nan]])
    around = np.stack([padded[:-4], padded[1:-3], padded[3:-1], padded[4:]], axis=1)
    local = np.nanmedian(np.where(np.isnan(around).all(axis=1, keepdims=True), np.inf, around), axis=1)
    link = gap <= 3.5 * local
    if part_of is not None:
        link &= part_of[:-1] == part_of[1:]
    chains, start = [], 0
    for i in range(n):
        if i == n - 1 or not link[i]:
            if i + 1 - start >= min_length:
                step = np.median(gap[start:i])
                closed = i + 1 - start > 4 and np.linalg.norm(shape[i] - shape[start]) <= 3.5 * step
                chains.append((np.arange(start, i + 1), bool(closed)))
            start = i + 1
    return chains


def _chain_lookup(chains, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per point: its chain (-1: none) and its position in that chain."""
    chain_of, pos = np.full(n, -1), np.full(n, -1)
    for i, (idx, _) in enumerate(chains):
        chain_of[idx] = i
        pos[idx] = np.arange(len(idx))
    return chain_of, pos


def _segments(perm, chains, min_length: int = 4):
    """Runs inside the chains whose partners walk one chain steadily (steps of 1-3 samples in one
    direction) or stay put (a midline run): ``(points, j, s, c)``, the partner of the run's k-th
    point near sample ``c + s k`` of chain j (``s = 0``: the run is its own mirror)."""
    chain_of, pos = _chain_lookup(chains, len(perm))
    out = []
    for idx, _ in chains:
        if np.mean(np.abs(perm[idx] - idx) <= 1) >= 0.8 and len(idx) >= min_length:
            out.append((idx, -1, 0, 0))  # points matched to themselves or a neighbour: the midline
            continue
        runs, run, sign = [], [idx[0]], 0
        for prev, cur in zip(idx[:-1], idx[1:]):
            a, b = perm[prev], perm[cur]
            step = 0
            if chain_of[a] >= 0 and chain_of[a] == chain_of[b]:
                m = len(chains[chain_of[a]][0])
                step = pos[b] - pos[a]
                if chains[chain_of[a]][1]:
                    step = (step + m // 2) % m - m // 2
            midline = a == prev and b == cur
            steady = 1 <= abs(step) <= 3 and (sign == 0 or np.sign(step) == sign) and perm[run[0]] != run[0]
            if (midline and perm[run[0]] == run[0]) or (not midline and steady):
                run.append(cur)
                sign = sign or int(np.sign(step)) if not midline else 0
                continue
            runs.append(run)
            run, sign = [cur], 0
        runs.append(run)
        found = []  # (first, last, j, s, c): positions in this chain, partner near c + s * position
        for run in runs:
            if len(run) < min_length:
                continue
            pts = np.asarray(run)
            if np.array_equal(perm[pts], pts):
                found.append((pos[pts[0]], pos[pts[-1]], -1, 0, 0))
                continue
            j = int(chain_of[perm[pts[0]]])
            m = len(chains[j][0])
            d = np.diff(pos[perm[pts]])
            if chains[j][1]:  # on a loop the wrapped steps give the direction, the commonest offset
                s = 1 if np.median((d + m // 2) % m - m // 2) > 0 else -1
                c = int(np.bincount((pos[perm[pts]] - s * pos[pts]) % m).argmax())
            else:
                s = 1 if np.median(d) > 0 else -1
                c = int(np.round(np.median(pos[perm[pts]] - s * pos[pts])))
            found.append((pos[pts[0]], pos[pts[-1]], j, s, c))
        out.extend(_merge_runs(idx, found, chains))
    return out


def _merge_runs(idx, found, chains):
    """Runs of one chain that map onto the same chain the same way (offsets within 3 samples) are
    one mapping with the points between them, midline runs there included: the matching broke it
    where the mean shape is least symmetric. Returns ``(points, j, s, c[, (grown, c')])`` with the
    partner of the k-th point near sample ``c + s k`` of chain j; ``grown`` adds the points up to
    half way to the next mapping."""
    maps = []
    for first, last, j, s, c in sorted(f for f in found if f[3] != 0):
        if maps and maps[-1][2:4] == (j, s):
            m = len(chains[j][0])
            dc = c - maps[-1][4]
            if chains[j][1]:
                dc = (dc + m // 2) % m - m // 2
            if abs(dc) <= 3:
                maps[-1] = (maps[-1][0], last, j, s, maps[-1][4])
                continue
        maps.append((first, last, j, s, c))
    kept = [f for f in found if f[3] == 0 and not any(m[0] <= f[0] <= m[1] for m in maps)]
    # the points between mappings (in no run, or matched to themselves) may join the nearest one
    # (split half way): a second extent offered to the polish, kept only where it mirrors better
    maps.sort()
    out = [(idx[f:last + 1], j, s, c + s * f) for f, last, j, s, c in kept]
    for i, (f, last, j, s, c) in enumerate(maps):
        lo = 0 if i == 0 else (maps[i - 1][1] + f) // 2 + 1
        hi = len(idx) - 1 if i == len(maps) - 1 else (last + maps[i + 1][0]) // 2
        seg = (idx[f:last + 1], j, s, c + s * f)
        out.append(seg + ((idx[lo:hi + 1], c + s * lo),) if lo < f or hi > last else seg)
    return out


def _segment_pairs(mirrored, shape, seg, chains, span: int = 3):
    """A segment's pairs at the offset (within ``span`` samples of its fitted one) whose partners
    lie closest to the mirror images (least squares, so a point left without a partner costs its
    full distance to its own mirror image): ``[(point, partner), ...]`` (partner = point: unpaired)."""
    pts, j, s, c = seg[:4]
    if s == 0:
        return [(int(p), int(p)) for p in pts]
    b, closed = chains[j]
    m = len(b)
    ka = np.arange(len(pts))
    self_cost = ((mirrored[pts] - shape[pts]) ** 2).sum(axis=1)
    best = None
    for cc in range(c - span, c + span + 1):
        kb = cc + s * ka
        kb = kb % m if closed else kb
        ok = (kb >= 0) & (kb < m)
        cost = self_cost.copy()
        cost[ok] = ((mirrored[pts[ok]] - shape[b[kb[ok]]]) ** 2).sum(axis=1)
        if best is None or cost.sum() < best[0]:
            best = (cost.sum(), np.where(ok, b[np.clip(kb, 0, m - 1)], pts))
    assert best is not None   # the loop over the offsets always runs (span >= 0)
    return list(zip(pts.tolist(), best[1].tolist()))


def _constrained(shape, perm, segments, chains, t: float) -> np.ndarray:
    """``perm`` with every segment at its best offset for the mirror at angle t: longer segments
    first, a pair made only between points no longer segment has paired."""
    mirrored = _reflect(shape, t)
    p = perm.copy()
    inseg = np.concatenate([sg[0] for sg in segments])
    p[p[inseg]] = p[inseg]   # the old partners of segment points are free again
    p[inseg] = inseg
    taken = np.zeros(len(p), bool)
    for seg in sorted(segments, key=lambda sg: -len(sg[0])):
        for a, b in _segment_pairs(mirrored, shape, seg, chains):
            if a == b or taken[a] or taken[b]:
                continue
            p[p[a]], p[p[b]] = p[a], p[b]
            p[a], p[b] = b, a
            taken[a] = taken[b] = True
    return p


def _angle(shape, perm) -> float:
    """The reflection parameter t of ``_reflect`` that best lands each point on its partner."""
    x, y = shape[:, 0], shape[:, 1]
    tx, ty = shape[perm, 0], shape[perm, 1]
    return float(np.arctan2((tx * y + ty * x).sum(), (tx * x - ty * y).sum()))


def infer_pairs(mean_shape, iterations: int = 10, parts=None, mirror_parts=()) -> tuple[list, float]:
    """Find flip pairs from a mean shape (see the module docstring). Returns the pairs (each
    (low, high), sorted) and the final mirrored error.

    Args:
        mean_shape: (K, 2) points.
        parts: optional (K,) part index per point (-1: none); no pair then crosses two parts
            except parts listed as ``mirror_parts`` (pairs of part indices).
    """
    shape = _normalise(np.asarray(mean_shape, dtype=np.float64))
    n = len(shape)
    part_of = None if parts is None else np.asarray(parts)
    allowed = _allowed(part_of, mirror_parts)
    perm = _match(shape, allowed, 0.0, iterations)
    chains = find_chains(shape, part_of)
    segments = _segments(perm, chains)
    if any(sg[2] != 0 for sg in segments):
        # one mirror line for all segments at once: sweep its angle around the matching's, each
        # segment at its best offset for that line, keep the lowest mean squared mirrored error
        t0 = _angle(shape, perm)
        best = None
        for t in t0 + np.deg2rad(np.arange(-8.0, 8.01, 0.25)):
            cand = _constrained(shape, perm, segments, chains, t)
            if allowed is not None and not allowed[np.arange(n), cand].all():
                continue
            err = float((point_errors(shape, cand) ** 2).mean())
            if best is None or err < best[0]:
                best = (err, cand)
        if best is not None:
            perm = _polish(shape, best[1], segments, chains, allowed)
    return pairs_from_perm(perm), mirror_error(shape, perm=perm)


def _sq_error(shape, perm) -> float:
    return float((point_errors(shape, perm) ** 2).mean())


def _polish(shape, perm, segments, chains, allowed, span: int = 4):
    """Each segment in turn at the offset (near its fitted one) with the lowest mean squared
    mirrored error of the whole shape, the mirror line refit every time; until nothing changes."""
    n = len(perm)
    err = _sq_error(shape, perm)
    for _ in range(3):
        changed = False
        for seg in segments:
            j, s = seg[1], seg[2]
            if s == 0:
                continue
            b, closed = chains[j]
            extents = [seg[:4:3]] + ([seg[4]] if len(seg) > 4 else [])
            for pts, cc in ((p, c0 + d) for p, c0 in extents for d in range(-span, span + 1)):
                k = np.arange(len(pts))
                kb = cc + s * k
                kb = kb % len(b) if closed else kb
                ok = (kb >= 0) & (kb < len(b))
                cand = _remap(perm, pts, pts[ok], b[kb[ok]])
                if allowed is not None and not allowed[np.arange(n), cand].all():
                    continue
                e = _sq_error(shape, cand)
                if e < err - 1e-15:
                    perm, err, changed = cand, e, True
        if not changed:
            break
    return perm


def _remap(perm: np.ndarray, pts: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """``perm`` with ``pts``, ``ib`` and their old partners unpaired, then ``ia[i] <-> ib[i]``;
    where a mapping runs inside one chain, a pair whose partner maps elsewhere is dropped (the
    result stays an involution)."""
    p = perm.copy()
    touched = np.concatenate([pts, ib])
    p[p[touched]] = p[touched]
    p[touched] = touched
    if np.intersect1d(ia, ib).size:
        back = dict(zip(ia.tolist(), ib.tolist()))
        keep = np.array([back.get(int(y), int(x)) == int(x) for x, y in zip(ia, ib)], bool)
        ia, ib = ia[keep], ib[keep]
    p[ia] = ib
    p[ib] = ia
    return p


# ------------------------------------------------------------------------- confidence of a pairing

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
