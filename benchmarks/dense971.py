"""A dense 971-point face set built from the 68-point ytf68 labels, with its true flip pairs.

The competition's layout is known only by parts (contour 0-272, eyebrows 273-400, nose 401-586,
eyes 587-840, mouth 841-968, pupils 969-970). This module resamples each part along the annotated
68 points so that every dense point sits at a parameter ``u`` along a chain of iBUG indices, and its
mirror partner at the mirrored parameter along the mirrored chain: the true pairs are known by
construction, whatever the sampling or the direction a chain is stored in.

Variants (each a realistic way a dense annotation tool lays points out):

- ``linear``: piecewise-linear between the 68 points, uniform in ``u``, chains stored in the
  iBUG directions (both brows left to right on the image, both eyes clockwise);
- ``smooth``: a Catmull-Rom curve through the 68 points; the right brow, the right eye and one
  nose wing stored in the other direction (outer to inner on both sides, the eyes mirror-wise);
- ``uneven``: the smooth curve, samples bunched near the annotated points (a symmetric warp of
  ``u`` inside each segment) and every point slid along its curve by annotator-like noise.

``python benchmarks/dense971.py --out DIR`` writes ``DIR/<variant>/{train,test}`` in the
competition layout (``landmarks.csv``, ``images`` linked to ytf68's, ``test_points.csv`` with 30
of the 971 indices per test image) and ``DIR/<variant>/true.yaml``, the true scheme. Nothing it
writes belongs in the repository.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import YTF68  # noqa: E402
PARTS = {"contour": (0, 272), "eyebrows": (273, 400), "nose": (401, 586), "eyes": (587, 840),
         "mouth": (841, 968), "pupils": (969, 970)}
VARIANTS = ("linear", "smooth", "uneven")
N_POINTS = 971


@dataclass(frozen=True)
class Chain:
    """Dense points along iBUG indices ``nodes`` (``closed``: a loop) at parameters ``u`` (node
    positions: ``u = 2.5`` is half way from ``nodes[2]`` to ``nodes[3]``)."""

    nodes: tuple
    u: np.ndarray
    closed: bool = False


def _uniform(n_nodes: int, n: int, closed: bool, ends: bool = True) -> np.ndarray:
    """n parameters evenly spread over a chain of n_nodes nodes."""
    span = n_nodes if closed else n_nodes - 1
    if closed:
        return np.arange(n) * span / n
    if ends:
        return np.linspace(0, span, n)
    return (np.arange(n) + 1) * span / (n + 1)


def _warp(u: np.ndarray, strength: float) -> np.ndarray:
    """Bunch samples near the nodes: ``floor(u) + g(frac u)``, ``g(f) = f - a sin(2 pi f) / 2 pi``.
    ``g(1 - f) = 1 - g(f)``, so a mirror-closed set of parameters stays mirror-closed."""
    base = np.floor(u)
    f = u - base
    return base + f - strength * np.sin(2 * np.pi * f) / (2 * np.pi)


def _layout(variant: str) -> tuple[list[Chain], list[tuple[int, int]]]:
    """Chains in index order (971 points in all) and the true flip pairs between their points."""
    other_way = variant != "linear"
    chains: list[Chain] = []
    pairs: list[tuple[int, int]] = []

    def add(chain: Chain) -> int:
        start = sum(len(c.u) for c in chains)
        chains.append(chain)
        return start

    def self_mirrored(nodes, n, closed, centre):
        """A chain that is its own mirror: u <-> centre - u (mod the loop)."""
        u = _uniform(len(nodes), n, closed)
        start = add(Chain(tuple(nodes), u, closed))
        span = len(nodes)
        for k, uk in enumerate(u):
            m = (centre - uk) % span if closed else centre - uk
            j = int(np.argmin(np.abs((u - m + span / 2) % span - span / 2) if closed else np.abs(u - m)))
            assert abs(u[j] - m) < 1e-9 or (closed and abs(abs(u[j] - m) - span) < 1e-9)
            if j > k:
                pairs.append((start + k, start + j))

    def mirrored_pair(nodes_a, nodes_b, n, closed, mirror, reverse_b, ends=True, shift=0.0):
        """Chain a, then chain b holding the mirror partners of a's points: a's node position u
        lands at b's position mirror(u); b stored in ascending order, or descending (reverse_b)."""
        ua = _uniform(len(nodes_a), n, closed, ends) + shift
        ub = np.array([mirror(x) for x in ua])
        order = np.argsort(ub)[::-1] if reverse_b else np.argsort(ub)
        a = add(Chain(tuple(nodes_a), ua, closed))
        b = add(Chain(tuple(nodes_b), ub[order], closed))
        where = np.empty(n, int)
        where[order] = np.arange(n)
        pairs.extend((a + k, b + int(where[k])) for k in range(n))

    # contour 0-272: the jaw 0..16, its own mirror (u <-> 16 - u), point 8 at index 136
    self_mirrored(range(17), 273, False, 16)
    # eyebrows 273-400: left brow 17..21 (outer -> inner), right brow 22..26 (inner -> outer as in
    # iBUG, or outer -> inner in the other variants); 17 + u mirrors to 26 - u = 22 + (4 - u)
    mirrored_pair(range(17, 22), range(22, 27), 64, False, lambda x: 4 - x, reverse_b=other_way)
    # nose 401-586: bridge 27..30 (midline), lower edge 31..35 (its own mirror), and the two wings
    # 29 -> 31 and 29 -> 35 (one stored the other way in the other variants)
    add(Chain((27, 28, 29, 30), _uniform(4, 45, False)))
    self_mirrored(range(31, 36), 71, False, 4)
    mirrored_pair((29, 31), (29, 35), 35, False, lambda x: x, reverse_b=other_way, ends=False)
    # eyes 587-840: left eye loop 36..41 from the outer corner, right eye loop 42..47 from the inner
    # corner (iBUG), 36 + u mirrors to 42 + (3 - u) mod 6; 127 points each
    mirrored_pair(range(36, 42), range(42, 48), 127, True, lambda x: (3 - x) % 6, reverse_b=other_way,
                  shift=0.0 if variant == "linear" else 0.02)
    # mouth 841-968: outer lip 48..59 (80 points, u <-> 6 - u mod 12), inner lip 60..67 (48 points)
    self_mirrored(range(48, 60), 80, True, 6)
    self_mirrored(range(60, 68), 48, True, 4)
    # pupils 969-970: the centres of the eye loops (handled in dense_points)
    pairs.append((969, 970))
    if variant == "uneven":
        chains = [Chain(c.nodes, _warp(c.u, 0.6), c.closed) for c in chains]
    assert sum(len(c.u) for c in chains) == N_POINTS - 2
    return chains, pairs


def _gather(p: np.ndarray, i: np.ndarray) -> np.ndarray:
    """Rows ``i`` (N, M) of each face's nodes ``p`` (N, n, 2) -> (N, M, 2)."""
    return np.take_along_axis(p, i[:, :, None], axis=1)


def _catmull_rom(p: np.ndarray, u: np.ndarray, closed: bool) -> np.ndarray:
    """A uniform Catmull-Rom curve through each face's nodes at positions u.
    Shape: p (N, n, 2), u (N, M) -> (N, M, 2)."""
    n = p.shape[1]
    i = np.floor(u).astype(int)
    if closed:
        idx = [(i + d) % n for d in (-1, 0, 1, 2)]
    else:
        i = np.minimum(i, n - 2)
        p = np.concatenate([2 * p[:, :1] - p[:, 1:2], p, 2 * p[:, -1:] - p[:, -2:-1]], axis=1)
        idx = [i + d + 1 for d in (-1, 0, 1, 2)]
    f = (u - i)[:, :, None]
    p0, p1, p2, p3 = (_gather(p, j) for j in idx)
    return 0.5 * ((2 * p1) + (-p0 + p2) * f + (2 * p0 - 5 * p1 + 4 * p2 - p3) * f ** 2
                  + (-p0 + 3 * p1 - 3 * p2 + p3) * f ** 3)


def _linear(p: np.ndarray, u: np.ndarray, closed: bool) -> np.ndarray:
    """Straight segments between each face's nodes. Shape: p (N, n, 2), u (N, M) -> (N, M, 2)."""
    n = p.shape[1]
    i = np.floor(u).astype(int)
    if not closed:
        i = np.minimum(i, n - 2)
    f = (u - i)[:, :, None]
    return _gather(p, i % n) * (1 - f) + _gather(p, (i + 1) % n) * f


def dense_points(points68: np.ndarray, variant: str, seed: int = 0) -> np.ndarray:
    """The dense 971-point labels of faces labelled with the 68 iBUG points.
    Shape: (N, 68, 2) -> (N, 971, 2), float32."""
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    p = np.asarray(points68, np.float64)
    chains, _ = _layout(variant)
    curve = _linear if variant == "linear" else _catmull_rom
    rng = np.random.default_rng(seed)
    out = []
    for c in chains:
        span = len(c.nodes) if c.closed else len(c.nodes) - 1
        u = np.broadcast_to(c.u, (len(p), len(c.u)))
        if variant == "uneven":  # annotator noise: each point slides along its curve (sd 0.08 segment)
            u = u + rng.normal(0, 0.08, u.shape)
            u = u % span if c.closed else np.clip(u, 0, span)
        out.append(curve(p[:, list(c.nodes)], u, c.closed))
    out.append(p[:, 36:42].mean(axis=1, keepdims=True))
    out.append(p[:, 42:48].mean(axis=1, keepdims=True))
    return np.concatenate(out, axis=1).astype(np.float32)


def true_pairs(variant: str) -> list[tuple[int, int]]:
    """The flip pairs of a variant, each (low, high), sorted."""
    return sorted((min(a, b), max(a, b)) for a, b in _layout(variant)[1])


def true_scheme(variant: str) -> dict:
    """The true scheme of a variant as a scheme-file mapping (pupils normalise NME)."""
    return {"name": f"dense971_{variant}", "n_points": N_POINTS,
            "flip_pairs": [list(p) for p in true_pairs(variant)], "norm": [969, 970],
            "parts": {k: list(v) for k, v in PARTS.items()}}


def _read68(path: Path):
    names, rows = [], []
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            fields = line.rstrip("\n").split("\t")
            names.append(fields[0])
            rows.append(np.asarray(fields[1:], np.float64).reshape(68, 2))
    return names, np.stack(rows)


def _write_labels(path: Path, names, pts: np.ndarray) -> None:
    header = "file_name\t" + "\t".join(f"Point_{i}_{c}" for i in range(pts.shape[1]) for c in "XY")
    with open(path, "w", encoding="utf-8") as f:
        f.write(header + "\n")
        for name, row in zip(names, pts):
            f.write(name + "\t" + "\t".join(f"{v:.2f}" for v in row.reshape(-1)) + "\n")


def build(out: Path, variant: str, source: Path = YTF68, limit: int | None = None, seed: int = 0) -> Path:
    """Write the dense set of one variant under ``out/variant``; return that folder."""
    from augkit.schemes import get_scheme
    root = Path(out) / variant
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        names, p68 = _read68(source / split / "landmarks.csv")
        if limit:
            names, p68 = names[:limit], p68[:limit]
        d = root / split
        d.mkdir(parents=True, exist_ok=True)
        if not (d / "images").exists():
            os.symlink((source / split / "images").resolve(), d / "images")
        _write_labels(d / "landmarks.csv", names, dense_points(p68, variant, seed))
        if split == "test":
            with open(d / "test_points.csv", "w", encoding="utf-8") as f:
                f.write("file_name\tpoint_index_list\n")
                for name in names:
                    idx = sorted(rng.choice(N_POINTS, 30, replace=False).tolist())
                    f.write(f"{name}\t{idx}\n")
    get_scheme(true_scheme(variant)).save(str(root / "true.yaml"))
    return root


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder to write the dense sets into (outside the repo)")
    ap.add_argument("--variant", choices=VARIANTS, action="append", help="default: all")
    ap.add_argument("--limit", type=int, default=None, help="first N faces of each split only")
    ap.add_argument("--source", default=str(YTF68))
    a = ap.parse_args(argv)
    for v in a.variant or VARIANTS:
        print(f"wrote {build(Path(a.out), v, Path(a.source), a.limit)}", file=sys.stderr)


if __name__ == "__main__":
    main()
