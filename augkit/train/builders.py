"""Small builders of a training run: device and precision, data and split, scheme and pipelines,
mean shape and its baseline, model, optimiser, and the validation sampler."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from augkit.errors import InputError
import augkit
from augkit.compose import Compose
from augkit.run_folder import input_fingerprint
from augkit.presets import (
    face_augment_steps,
    preprocess_pipeline,
    preprocess_steps,
    warp_options,
)
from augkit.schemes import Scheme, get_scheme

from . import data as train_data
from .config import head_settings
from augkit.models.network import build_model

__all__ = [
    "ShardSampler",
    "TrainData",
    "amp_dtype_for",
    "baseline",
    "choose_scheme",
    "eval_pipeline",
    "load_data",
    "make_model",
    "make_optimizer",
    "mean_shape",
    "pick_device",
    "pipelines",
]


def pick_device(cfg, dist) -> torch.device:
    """The training device of this process (``--device``; under DDP on CUDA: the local rank's GPU)."""
    name = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda: no CUDA device is available")
        if dist.on:
            torch.cuda.set_device(dist.local_rank)
            return torch.device("cuda", dist.local_rank)
    return torch.device(name)


def amp_dtype_for(cfg, device: torch.device, log) -> torch.dtype | None:
    """The autocast dtype (``--amp``): bf16 or fp16 on CUDA, None (float32) elsewhere."""
    if device.type == "cuda" and cfg.amp != "off":
        if cfg.amp == "fp16" or (cfg.amp == "auto" and not torch.cuda.is_bf16_supported()):
            return torch.float16
        return torch.bfloat16
    if cfg.amp in ("bf16", "fp16"):
        log(f"--amp {cfg.amp}: mixed precision is for CUDA; training in float32 on {device.type}")
    return None


@dataclass
class TrainData:
    """The two image sources of a run, what was skipped, and how the split was made."""

    train: train_data.Source
    val: train_data.Source
    n_points: int
    skipped: list
    description: str
    split: dict
    fingerprint: dict | None = None   # the inputs (label file, image names): --resume checks them


def _demo_data(cfg) -> TrainData:
    from augkit.data.synthetic import SyntheticFaces
    n_train, n_val = int(cfg.demo_train), int(cfg.demo_val)
    faces = SyntheticFaces(n_train + n_val, seed=cfg.seed)
    train = train_data.SynthSource(faces, np.arange(n_train))
    val = train_data.SynthSource(faces, np.arange(n_train, n_train + n_val))
    split = {"data": None, "how": f"synthetic demo faces (seed {cfg.seed}): the first {n_train} train, the next "
             f"{n_val} validate", "train": train.files, "val": val.files}
    return TrainData(train, val, 68, [], f"synthetic demo faces: {n_train} train, {n_val} validation "
                     "(generated on the fly)", split, input_fingerprint(None, train.files + val.files))


def _verified_rows(table, cfg, progress: bool):
    """(kept row indices, their (w, h) sizes, skipped rows) after checking every image."""
    from augkit.data import verify_images
    checked = verify_images(table, strict=cfg.strict, decode=cfg.verify == "decode", progress=progress)
    keep, j = [], 0
    for i, f in enumerate(table.files):  # verify_images keeps the order of the rows it keeps
        if j < len(checked.files) and checked.files[j] == f:
            keep.append(i)
            j += 1
    return np.asarray(keep, np.int64), checked.sizes, checked.skipped


def _excluded(table, path):
    """(row, skipped entry) of each row whose image ``--exclude`` lists (reason ``excluded ...``)."""
    if not path:
        return []
    from augkit.exclude import read_exclusions
    names = read_exclusions(path)
    out = []
    for i, f in enumerate(table.files):
        if os.path.basename(f) in names:
            line = None if table.lines is None else int(table.lines[i])
            out.append((i, {"file": str(f), "row": line, "reason": f"excluded (listed in {path})"}))
    return out


def load_data(cfg, dist) -> TrainData:
    """Read ``--data`` (every rank parses the labels; rank 0 alone decodes the images to verify them
    and shares the result), then split it into training and validation images."""
    if cfg.data is None:
        return _demo_data(cfg)
    from augkit.data import read_dataset
    table = read_dataset(cfg.data, format=cfg.format, strict=cfg.strict)
    if cfg.limit:
        table = table.subset(np.arange(min(cfg.limit, len(table))))
    excluded = _excluded(table, cfg.exclude)
    table = table.subset(~np.isin(np.arange(len(table)), [i for i, _ in excluded]))
    keep, sizes, skipped = dist.from_main(lambda: _verified_rows(table, cfg, not cfg.quiet))
    table = table.subset(keep)
    table.sizes, table.skipped = sizes, skipped + [e for _, e in excluded]
    train_idx, val_idx = train_data.split_indices(table.files, cfg.val_fraction, cfg.seed, cfg.val_group)
    how = (f"by group {cfg.val_group!r}" if cfg.val_group else "at random") + \
        f", validation fraction {cfg.val_fraction}, seed {cfg.seed}"
    root = table.root or os.path.dirname(table.source)
    names = [os.path.relpath(f, root) for f in table.files]
    split = {"data": os.path.abspath(cfg.data), "format": table.format, "root": os.path.abspath(root), "how": how,
             "seed": cfg.seed, "val_fraction": cfg.val_fraction, "val_group": cfg.val_group,
             "train": [names[i] for i in train_idx], "val": [names[i] for i in val_idx]}
    desc = (f"{table.format} dataset {table.source}: {len(table)} images, {table.n_points} points "
            f"({len(table.skipped)} rows skipped); split {how}: {len(train_idx)} train, {len(val_idx)} validation")
    fingerprint = dist.from_main(lambda: input_fingerprint(table.source, names, table.points))
    return TrainData(train_data.FileSource(table.subset(train_idx)), train_data.FileSource(table.subset(val_idx)),
                     table.n_points, table.skipped, desc, split, fingerprint)


def choose_scheme(cfg, n_points: int, aug_steps, given: Scheme | None = None) -> Scheme:
    """``--scheme`` (``given``: already read), else ibug68 for 68 points, else a scheme without flip
    pairs (refused if the augmentation flips)."""
    if cfg.scheme:
        s = given if given is not None else get_scheme(cfg.scheme)
        if s.n_points != n_points:
            raise InputError(f"--scheme {s.name}: {s.n_points} points, the data has {n_points}")
        return s
    if n_points == 68:
        return get_scheme("ibug68")
    if Compose(aug_steps, points_unordered=True).can_flip:
        raise InputError(f"the data has {n_points} points per face and the augmentation flips: pass --scheme FILE "
                         "with its flip pairs (`augkit scheme infer --data ...` writes one), or an --aug without HFlip")
    return Scheme(f"points{n_points}", n_points)


def pipelines(cfg) -> tuple[list, list, dict]:
    """(preprocessing steps, augmentation steps, Compose options of an ``--aug`` file)."""
    pre = preprocess_steps(cfg.size, cfg.preprocess)
    if cfg.no_aug:
        return pre, [], {}
    if cfg.aug:
        loaded = augkit.load(cfg.aug)
        return pre, list(loaded.steps), warp_options(loaded)
    return pre, face_augment_steps(), {}


def eval_pipeline(cfg, scheme, opts: dict) -> Compose:
    """The deterministic preprocessing of validation, of the checkpoint and so of ``augkit predict``:
    ``--size``/``--preprocess`` with the training warp's ``opts`` (from :func:`pipelines`: an ``--aug``
    file's border mode, fill and interpolation), so letterbox padding looks the same as in training."""
    return preprocess_pipeline(cfg.size, cfg.preprocess, scheme, **opts)


def mean_shape(source, pre_pipe, size: int) -> np.ndarray:
    """Mean of the training points in the (unaugmented) model frame, normalised. Shape: (K, 2)."""
    total = np.zeros((source.points.shape[1], 2))
    count = np.zeros((source.points.shape[1], 1))
    matrices = {}
    for pts, wh in zip(source.points, source.sizes):
        key = (int(wh[0]), int(wh[1]))
        if key not in matrices:
            matrices[key] = train_data.preprocess_matrix(pre_pipe, key)[0]
        p = augkit.geometry.apply_points(matrices[key], pts)
        ok = np.isfinite(p).all(1)
        total[ok] += p[ok]
        count[ok] += 1
    mean_px = total / np.maximum(count, 1)
    return (mean_px + 0.5) / np.array([size, size], dtype=np.float64)


def baseline(source, pre_pipe, mean_norm: np.ndarray, size: int) -> np.ndarray:
    """The mean shape (model frame) mapped back to every image's original pixels. Shape: (N, K, 2)."""
    mean_px = mean_norm * size - 0.5
    out = np.empty(source.points.shape)
    for i, wh in enumerate(source.sizes):
        m, _ = train_data.preprocess_matrix(pre_pipe, (int(wh[0]), int(wh[1])))
        out[i] = augkit.geometry.apply_points(augkit.geometry.invert(m), mean_px)
    return out


def check_weights_points(path: str, n_points: int) -> None:
    """Refuse an augkit checkpoint given as ``--weights`` whose point count differs from the data's
    (its head would silently stay untrained)."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not readable here: build_model reports it
        return
    info = ck.get("model_info") if isinstance(ck, dict) else None
    if isinstance(info, dict) and info.get("n_points") not in (None, n_points):
        raise InputError(f"--weights {path}: the checkpoint predicts {info['n_points']} points per face, the data "
                         f"has {n_points}; use a checkpoint trained on {n_points}-point data, or an ImageNet state dict")


def make_model(cfg, n_points: int, mean_norm: np.ndarray, device: torch.device) -> torch.nn.Module:
    """The regressor, seeded, on ``device`` (channels_last on CUDA when asked)."""
    if cfg.weights:
        check_weights_points(cfg.weights, n_points)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.backbone, n_points, pretrained=cfg.pretrained, weights=cfg.weights,
                        mean_shape=mean_norm, head=cfg.head, head_settings=head_settings(cfg),
                        input_size=(cfg.size, cfg.size)).to(device)
    if cfg.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def make_optimizer(cfg, model: torch.nn.Module, lr: float | None = None) -> torch.optim.Optimizer:
    """AdamW, Adam or SGD (Nesterov) at ``lr`` (default ``cfg.lr``); no weight decay on biases and
    norm parameters."""
    lr = cfg.lr if lr is None else lr
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr)
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=True)


class ShardSampler(torch.utils.data.Sampler):
    """Validation sampling: rank r takes images r, r + world, ... (each image exactly once over all
    ranks, no padding), as ``(0, index)`` pairs for :class:`LandmarkDataset`."""

    def __init__(self, n: int, world: int = 1, rank: int = 0):
        self.indices = list(range(rank, n, world))

    def __iter__(self):
        return iter([(0, i) for i in self.indices])

    def __len__(self):
        return len(self.indices)
