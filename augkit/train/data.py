"""Training data: image sources, the per-sample seeded dataset, sharded epoch-tagged sampling, splits.

Every sample of every epoch draws its augmentation from
``np.random.default_rng(np.random.SeedSequence([seed, epoch, index]))``: a run is reproducible
whatever the number of workers, and any sample can be reproduced alone. The sampler hands the
dataset ``(epoch, index)`` pairs, so persistent workers need no epoch broadcast.
"""

from __future__ import annotations

import os
import re
from typing import Protocol, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from augkit.errors import InputError

from augkit import geometry as G
from augkit.data import PERSON_REGEX
from augkit.workers import default_workers, init_worker, worker_context

__all__ = ["FileSource", "SynthSource", "LandmarkDataset", "EpochSampler", "make_loader", "default_workers",
           "worker_init", "PREFETCH_FACTOR", "split_indices",
           "person_key", "PERSON_REGEX", "preprocess_matrix", "sample_rng"]


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample of one epoch."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(index)]))


class Source(Protocol):
    """Images with their points (original pixels): what a run trains and validates on."""

    points: np.ndarray

    def __len__(self) -> int: ...

    def image(self, i: int) -> np.ndarray: ...


class FileSource:
    """Images on disk (a :class:`~augkit.data.LandmarkTable`).

    Holds the table's arrays as they are: file paths as one numpy string array and the points as
    one float32 array, no per-row Python objects, so forked DataLoader workers share these pages
    instead of copying them (reference counts of per-row objects would touch every page)."""

    def __init__(self, table):
        self.files = np.asarray(table.files, dtype=str)
        self.points = np.asarray(table.points, dtype=np.float32)
        self.sizes = table.sizes

    def __len__(self):
        return len(self.files)

    def image(self, i):
        from augkit.io import read_image
        return read_image(str(self.files[i]))


class SynthSource:
    """The synthetic demo faces (rendered on demand)."""

    def __init__(self, faces, index=None):
        self.faces = faces
        self.index = np.arange(len(faces)) if index is None else np.asarray(index)
        self.files = [faces.files[i] for i in self.index]
        self.points = faces.points[self.index]
        self.sizes = faces.sizes[self.index]

    def __len__(self):
        return len(self.index)

    def image(self, i):
        return self.faces.image(int(self.index[i]))


def preprocess_matrix(pipeline, size_wh) -> tuple[np.ndarray, tuple[int, int]]:
    """The fused 3x3 matrix and output size of a deterministic pipeline for an image of
    ``size_wh`` = (w, h), without touching pixels (``Compose.plan``)."""
    if not pipeline.deterministic:
        raise InputError("preprocess_matrix needs a deterministic pipeline")
    m, size, _ = pipeline.plan((int(size_wh[0]), int(size_wh[1])))
    return np.array(m, dtype=np.float64), (int(size[0]), int(size[1]))


class LandmarkDataset(Dataset):
    """Samples ``(epoch, index)`` -> dict of tensors.

    Returns per item: ``image`` uint8 (H, W, 3); ``target`` float32 (K, 2) normalised
    (``(x + 0.5) / W``); ``mask`` bool (K,) (inside the crop and finite); ``index`` int;
    ``matrix`` float64 (3, 3) original -> model frame; ``flipped`` bool.

    ``pipeline`` is the fused preprocessing (+ augmentation) Compose; with ``train=False`` it must
    be deterministic. An image that fails to decode here (``--verify header`` checked only its
    header) becomes a masked sample whose ``skip`` holds the reason (the loop counts it in
    ``skipped.csv``); with ``strict=True`` it is an error naming the file.
    ``file`` is the image's name.
    """

    def __init__(self, source, pipeline, seed: int = 0, train: bool = True, strict: bool = False):
        self.source, self.pipeline, self.seed, self.train = source, pipeline, int(seed), bool(train)
        self.strict = bool(strict)
        self.epoch = 0

    def __len__(self):
        return len(self.source)

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def __getitem__(self, item):
        epoch, i = item if isinstance(item, tuple) else (self.epoch, item)
        pts = self.source.points[i]
        skip = ""
        try:
            image = self.source.image(i)
        except Exception as e:  # a counted skip (masked sample), not a dead run; --strict: the error
            if self.strict:
                raise
            skip = f"could not be decoded during training ({type(e).__name__}: {e})"[:300]
            sizes = getattr(self.source, "sizes", None)
            w, h = (int(sizes[i][0]), int(sizes[i][1])) if sizes is not None else (0, 0)
            image = np.zeros((h or 64, w or 64, 3), np.uint8)
        rng = sample_rng(self.seed, epoch, i) if self.train else None
        res = self.pipeline(image, pts, rng=rng)
        h, w = res.image.shape[:2]
        out = res.points
        mask = res.visible & np.isfinite(out).all(axis=1) & (not skip)
        target = (out + 0.5) / np.array([w, h], dtype=np.float64)
        target = np.where(np.isfinite(target), target, 0.0)
        img = res.image
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(img)),
            "target": torch.from_numpy(target.astype(np.float32)),
            "mask": torch.from_numpy(mask),
            "index": i,
            "matrix": torch.from_numpy(res.matrix),
            "flipped": bool(res.record["flips"] % 2),
            "file": str(self.source.files[i]),
            "skip": skip,
        }


class EpochSampler(Sampler):
    """PyTorch's :class:`DistributedSampler` (sharding, shuffling by ``seed + epoch``), yielding
    ``(epoch, index)`` so the dataset knows the epoch; ``start`` skips the first batches' indices of
    this rank (resuming mid-epoch)."""

    def __init__(self, n: int, world: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0):
        # the sampler needs the length only: the indices 0..n-1 stand for the dataset
        self.inner: DistributedSampler = DistributedSampler(cast("Dataset", range(n)), num_replicas=world, rank=rank,
                                                            shuffle=shuffle, seed=seed, drop_last=False)
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0):
        self.epoch, self.start = int(epoch), int(start)
        self.inner.set_epoch(self.epoch)

    def __iter__(self):
        idx = list(self.inner)[self.start:]
        return iter([(self.epoch, i) for i in idx])

    def __len__(self):
        return max(0, len(self.inner) - self.start)


#: every DataLoader worker starts with OpenCV on one thread, ignoring stop signals (:mod:`augkit.workers`)
worker_init = init_worker


#: batches each worker prepares ahead (torch's default is 2)
PREFETCH_FACTOR = 4


def make_loader(dataset, batch_size: int, workers: int | None, sampler, pin_memory: bool = False,
                drop_last: bool = False, prefetch_factor: int = PREFETCH_FACTOR) -> DataLoader:
    """The training / validation DataLoader: ``workers`` processes (None: :func:`default_workers`),
    kept alive across epochs (persistent), each prefetching ``prefetch_factor`` batches, with
    OpenCV on one thread inside each (:func:`worker_init`). ``workers=0`` loads in this process."""
    workers = default_workers() if workers is None else int(workers)
    extra = {}
    if workers:
        extra = dict(persistent_workers=True, prefetch_factor=prefetch_factor, worker_init_fn=worker_init,
                     multiprocessing_context=worker_context())
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=pin_memory,
                      drop_last=drop_last, **extra)


def person_key(path: str, regex: str) -> str:
    """The group of an image: the regex's first group (or whole match), searched in the file name
    (then in the name without its extension); the name itself when it does not match."""
    name = os.path.basename(path)
    m = re.search(regex, name) or re.search(regex, os.path.splitext(name)[0])
    if not m:
        return name
    return m.group(1) if m.groups() and m.group(1) is not None else m.group(0)


def split_indices(files, fraction: float, seed: int, group_regex: str | None = None):
    """(train, val) index arrays: a random ``fraction`` of the images, or (with ``group_regex``)
    of whole groups (people), so no group is on both sides."""
    n = len(files)
    if not 0.0 <= fraction < 1.0:
        raise InputError(f"--val-fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 424242]))
    if fraction == 0 or n < 2:
        return np.arange(n), np.arange(0)
    if group_regex is None:
        perm = rng.permutation(n)
        k = max(1, int(round(fraction * n)))
        return np.sort(perm[k:]), np.sort(perm[:k])
    if group_regex == "person":
        group_regex = PERSON_REGEX
    try:
        re.compile(group_regex)
    except re.error as e:
        raise InputError(f"--val-group: {group_regex!r} is not a valid regular expression ({e})") from None
    keys = [person_key(f, group_regex) for f in files]
    names = [os.path.basename(f) for f in files]
    if all(k == nm for k, nm in zip(keys, names)):
        raise InputError(f"--val-group {group_regex!r} matches none of the file names (e.g. {names[0]!r})")
    groups = sorted(set(keys))
    if len(groups) < 2:
        raise InputError(f"--val-group {group_regex!r}: all {n} images fall in one group ({groups[0]!r}); "
                         "cannot split by group")
    order = rng.permutation(len(groups))
    by: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        by.setdefault(key, []).append(i)
    chosen: list[int] = []
    target = fraction * n
    for g in order:
        if len(chosen) >= target:
            break
        chosen.extend(by[groups[g]])
    val = np.array(sorted(chosen), dtype=np.int64)
    train = np.setdiff1d(np.arange(n), val)
    if len(train) == 0:
        raise InputError("--val-group: the split left no training images")
    return train, val


def invert_batch(matrices: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Model-frame points -> original pixels for a batch of fused preprocessing matrices (no flips).
    Shape: matrices (N, 3, 3), points (N, K, 2) -> (N, K, 2)."""
    inv = np.stack([G.invert(m) for m in matrices])
    if not all(G.is_affine(m) for m in inv):   # a projective preprocessing: point by point
        return np.stack([G.apply_points(m, p) for m, p in zip(inv, points)])
    return np.einsum("nij,nkj->nki", inv[:, :2, :2], points) + inv[:, None, :2, 2]
