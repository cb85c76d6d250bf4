"""The training loop behind ``augkit train``: data, model, optimiser and schedule, validation in
original pixels against the mean-shape baseline, run folder, atomic checkpoints, resume, DDP.

Entry point: :func:`run` with a :class:`TrainConfig`. Under ``torchrun`` (``WORLD_SIZE`` > 1) it
trains with :class:`torch.nn.parallel.DistributedDataParallel` (gloo on CPU, NCCL on CUDA): sharded
sampling, metrics gathered across processes, checkpoints and logs from rank 0.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

import augkit
from augkit import metrics as M
from augkit.compose import Compose
from augkit.config import atomic_write_text
from augkit.presets import face_augment_steps, preprocess_steps
from augkit.schemes import Scheme, get_scheme

from . import data as D
from .checkpoint import normalise, read_checkpoint, save_checkpoint
from .losses import landmark_loss
from .model import IMAGENET_MEAN, IMAGENET_STD, build_model, decode

__all__ = ["TrainConfig", "run", "LRSchedule", "resolve_config"]

DEMO_DEFAULTS = dict(backbone="resnet18", size=64, epochs=8, batch_size=32, lr=2e-3, demo_train=2000, demo_val=300)
DATA_DEFAULTS = dict(backbone="resnet50", size=128, epochs=30, batch_size=32, lr=1e-3)


@dataclass
class TrainConfig:
    """Every option of a run (saved as ``config.json`` in the run folder). ``None`` means "the
    default for this kind of run" (demo or --data), filled by :func:`resolve_config`."""

    data: str | None = None
    format: str | None = None
    strict: bool = False
    verify: str = "decode"          # decode | header
    scheme: str | None = None
    out: str | None = None
    backbone: str | None = None
    pretrained: bool = False
    weights: str | None = None
    size: int | None = None
    preprocess: str = "crop"
    aug: str | None = None
    no_aug: bool = False
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    momentum: float = 0.9
    scheduler: str = "cosine"       # cosine | onecycle | plateau | none
    restart_epochs: float | None = None
    warmup: float = 0.5             # epochs of linear warm-up
    clip: float = 5.0               # gradient-norm clip (0: off)
    loss: str = "smooth-l1"
    trim: float = 0.0
    val_fraction: float = 0.1
    val_group: str | None = None
    workers: int | None = None
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"               # auto | bf16 | fp16 | off
    channels_last: bool = True
    quiet: bool = False
    limit: int | None = None
    demo_train: int | None = None
    demo_val: int | None = None
    time_budget: float | None = None   # minutes of training, then validate and stop
    checkpoint_minutes: float = 5.0
    checkpoint_steps: int = 0
    threads: int | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """Fill the ``None`` defaults (demo vs real data) and check the choices."""
    d = dataclasses.replace(cfg)
    defaults = DEMO_DEFAULTS if cfg.data is None else DATA_DEFAULTS
    for k, v in defaults.items():
        if getattr(d, k) is None:
            setattr(d, k, v)
    if d.workers is None:
        d.workers = D.default_workers()
    if d.optimizer not in ("adamw", "adam", "sgd"):
        raise ValueError(f"--optimizer must be adamw, adam or sgd, got {d.optimizer!r}")
    if d.scheduler not in ("cosine", "onecycle", "plateau", "none"):
        raise ValueError(f"--scheduler must be cosine, onecycle, plateau or none, got {d.scheduler!r}")
    if d.amp not in ("auto", "bf16", "fp16", "off"):
        raise ValueError(f"--amp must be auto, bf16, fp16 or off, got {d.amp!r}")
    if d.epochs < 1 or d.batch_size < 1 or d.size < 16:
        raise ValueError("--epochs and --batch-size must be >= 1 and --size >= 16")
    return d


# ------------------------------------------------------------------------------------ LR schedule

class LRSchedule:
    """Learning rate per optimiser step: linear warm-up times cosine with warm restarts, one-cycle,
    reduce-on-plateau or constant. A plain object with a state dict (resumable)."""

    def __init__(self, kind, base_lr, steps_per_epoch, epochs, warmup_epochs=0.0, restart_epochs=None,
                 factor=0.5, patience=2, min_ratio=1e-3):
        self.kind, self.base_lr = kind, float(base_lr)
        self.spe, self.epochs = max(1, int(steps_per_epoch)), int(epochs)
        self.warmup = max(0, int(round(warmup_epochs * self.spe)))
        # cosine period in steps: the restart period, or the whole run after warm-up
        self.period = max(1, int(round(restart_epochs * self.spe)) if restart_epochs
                          else self.spe * self.epochs - self.warmup)
        self.factor, self.patience, self.min_ratio = factor, patience, min_ratio
        self.scale, self.best, self.bad = 1.0, math.inf, 0
        self.restarts = bool(restart_epochs)

    def lr(self, step: int) -> float:
        total = self.spe * self.epochs
        if self.kind == "onecycle":
            pct = max(self.warmup / total, 0.05) if self.warmup else 0.3
            t = step / max(1, total)
            lo, end = self.base_lr / 25, self.base_lr / 1e4
            if t < pct:
                return lo + (self.base_lr - lo) * 0.5 * (1 - math.cos(math.pi * t / pct))
            return end + (self.base_lr - end) * 0.5 * (1 + math.cos(math.pi * min(1.0, (t - pct) / (1 - pct))))
        warm = min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0
        if self.kind == "cosine":
            e = max(0, step - self.warmup)
            t = (e % self.period) / self.period if self.restarts else min(1.0, e / self.period)
            f = self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        elif self.kind == "plateau":
            f = self.scale
        else:
            f = 1.0
        return self.base_lr * warm * f

    def epoch_end(self, metric: float) -> None:  # noqa: D401
        """Reduce-on-plateau bookkeeping (other kinds ignore it)."""
        if self.kind != "plateau" or not np.isfinite(metric):
            return
        if metric < self.best * (1 - 1e-4):
            self.best, self.bad = metric, 0
        else:
            self.bad += 1
            if self.bad > self.patience:
                self.scale *= self.factor
                self.bad = 0

    def state_dict(self) -> dict:
        return {"scale": self.scale, "best": self.best, "bad": self.bad}

    def load_state_dict(self, s: dict) -> None:
        self.scale, self.best, self.bad = s["scale"], s["best"], s["bad"]


# ------------------------------------------------------------------------------------- helpers

class _Dist:
    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.on = self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def init(self, device_type: str):
        if self.on and not torch.distributed.is_initialized():
            backend = "nccl" if device_type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend)

    def broadcast(self, obj):
        if not self.on:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list:
        if not self.on:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def barrier(self):
        if self.on:
            torch.distributed.barrier()

    def close(self):
        if self.on and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _device(cfg, dist) -> torch.device:
    if cfg.device == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        name = cfg.device
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda: no CUDA device is available")
        if dist.on:
            torch.cuda.set_device(dist.local_rank)
            return torch.device("cuda", dist.local_rank)
    return torch.device(name)


def default_run_dir(cfg) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = "demo" if cfg.data is None else os.path.basename(os.path.normpath(cfg.data)) or "data"
    base = os.path.join("runs", f"{stamp}-{name}")
    path, i = base, 1
    while os.path.exists(path):
        i += 1
        path = f"{base}-{i}"
    return path


def _rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "python": random.getstate()}
    npst = np.random.get_state()
    st["numpy"] = [npst[0], npst[1].tolist(), int(npst[2]), int(npst[3]), float(npst[4])]
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in st["python"]))
    n = st["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    if "cuda" in st and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(st["cuda"])
        except RuntimeError:
            pass


class _Log:
    def __init__(self, quiet: bool, main: bool):
        self.quiet, self.main = quiet, main

    def __call__(self, msg: str):
        if self.main and not self.quiet:
            from tqdm.auto import tqdm
            tqdm.write(msg)

    def always(self, msg: str):
        if self.main:
            print(msg, flush=True)


LOG_COLUMNS = ["epoch", "train_loss", "val_loss", "mse", "nme", "fr", "base_mse", "base_nme", "base_fr", "lr",
               "train_img_s", "epoch_s", "elapsed_s"]


def _write_logs(run_dir: str, history: list) -> None:
    lines = [",".join(LOG_COLUMNS)]
    for h in history:
        lines.append(",".join("" if h.get(c) is None else (f"{h[c]:.6g}" if isinstance(h[c], float) else str(h[c]))
                              for c in LOG_COLUMNS))
    atomic_write_text(os.path.join(run_dir, "log.csv"), "\n".join(lines) + "\n")
    atomic_write_text(os.path.join(run_dir, "log.jsonl"), "".join(json.dumps(h) + "\n" for h in history))


def plot_curves(run_dir: str, history: list) -> str | None:
    """``curves.png``: losses, and validation NME against the mean-shape baseline."""
    if not history:
        return None
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(ep, [h["train_loss"] for h in history], "o-", label="train loss")
    if any(h.get("val_loss") is not None for h in history):
        ax[0].plot(ep, [h.get("val_loss") for h in history], "o-", label="val loss")
    ax[0].set_yscale("log")
    ax[0].set_xlabel("epoch")
    ax[0].legend()
    if any(h.get("nme") is not None for h in history):
        ax[1].plot(ep, [h.get("nme") for h in history], "o-", label="val NME")
        ax[1].plot(ep, [h.get("base_nme") for h in history], "--", label="mean-shape baseline")
        ax[1].set_xlabel("epoch")
        ax[1].set_ylabel("NME")
        ax[1].legend()
    fig.tight_layout()
    path = os.path.join(run_dir, "curves.png")
    tmp = os.path.join(run_dir, ".curves.tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------- data

def _load_data(cfg, log, dist):
    """(train source, val source, n_points, skipped list, description)."""
    if cfg.data is None:
        from .synthetic import SyntheticFaces
        n_tr, n_va = int(cfg.demo_train), int(cfg.demo_val)
        faces = SyntheticFaces(n_tr + n_va, seed=cfg.seed)
        train = D.SynthSource(faces, np.arange(n_tr))
        val = D.SynthSource(faces, np.arange(n_tr, n_tr + n_va))
        return train, val, 68, [], f"synthetic demo faces: {n_tr} train, {n_va} validation (generated on the fly)"
    from .readers import read_dataset, verify_images
    table = read_dataset(cfg.data, format=cfg.format, strict=cfg.strict)
    if cfg.limit:
        table = table.subset(np.arange(min(cfg.limit, len(table))))
    table = verify_images(table, strict=cfg.strict, decode=cfg.verify == "decode",
                          progress=dist.main and not cfg.quiet)
    tr, va = D.split_indices(table.files, cfg.val_fraction, cfg.seed, cfg.val_group)
    how = f"by group {cfg.val_group!r}" if cfg.val_group else "at random"
    desc = (f"{table.format} dataset {table.source}: {len(table)} images, {table.n_points} points "
            f"({len(table.skipped)} rows skipped); split {how}: {len(tr)} train, {len(va)} validation")
    return D.FileSource(table.subset(tr)), D.FileSource(table.subset(va)), table.n_points, table.skipped, desc


def _scheme(cfg, n_points, aug_steps) -> Scheme:
    if cfg.scheme:
        s = get_scheme(cfg.scheme)
        if s.n_points != n_points:
            raise ValueError(f"--scheme {s.name}: {s.n_points} points, the data has {n_points}")
        return s
    if n_points == 68:
        return get_scheme("ibug68")
    if Compose(aug_steps, points_unordered=True).can_flip:
        raise ValueError(f"the data has {n_points} points per face and the augmentation flips: pass --scheme FILE "
                         "with its flip pairs (`augkit scheme infer --data ...` writes one), or an --aug without HFlip")
    return Scheme(f"points{n_points}", n_points)


def _pipelines(cfg):
    pre = preprocess_steps(cfg.size, cfg.preprocess)
    opts = {}
    if cfg.no_aug:
        aug = []
    elif cfg.aug:
        loaded = augkit.load(cfg.aug)
        aug = list(loaded.steps)
        opts = dict(border_mode=loaded.border_mode, fill=loaded.fill, interpolation=loaded.interpolation)
    else:
        aug = face_augment_steps()
    return pre, aug, opts


def _mean_shape(source, pre_pipe, size) -> np.ndarray:
    """Mean of the training points in the (unaugmented) model frame, normalised. Shape: (K, 2)."""
    acc = np.zeros((source.points.shape[1], 2))
    cnt = np.zeros((source.points.shape[1], 1))
    cache = {}
    for pts, wh in zip(source.points, source.sizes):
        key = (int(wh[0]), int(wh[1]))
        if key not in cache:
            cache[key] = D.preprocess_matrix(pre_pipe, key)[0]
        p = augkit.geometry.apply_points(cache[key], pts)
        ok = np.isfinite(p).all(1)
        acc[ok] += p[ok]
        cnt[ok] += 1
    mean_px = acc / np.maximum(cnt, 1)
    return (mean_px + 0.5) / np.array([size, size], dtype=np.float64)


# ---------------------------------------------------------------------------------------- run

def run(cfg: TrainConfig, resume: str | None = None) -> dict:
    """Train (or resume ``resume``, a run folder or a ``last.pt``). Returns the summary dict."""
    dist = _Dist()
    ck = None
    if resume:
        ck_path = resume if os.path.isfile(resume) else os.path.join(resume, "last.pt")
        if not os.path.isfile(ck_path):
            raise FileNotFoundError(f"--resume {resume}: no last.pt there")
        ck = read_checkpoint(ck_path)
        saved = TrainConfig.from_dict(ck["config"])
        # options that may change on resume: how long, how loud, how parallel
        for k in ("epochs", "quiet", "workers", "time_budget", "device", "checkpoint_minutes", "checkpoint_steps",
                  "threads"):
            v = getattr(cfg, k)
            if v is not None and v != getattr(TrainConfig, k, None):
                setattr(saved, k, v)
        if cfg.time_budget is None:  # a budget is for one session: a resume runs to the end unless given one
            saved.time_budget = None
        saved.out = os.path.dirname(os.path.abspath(ck_path))
        cfg = saved
    cfg = resolve_config(cfg)
    device = _device(cfg, dist)
    dist.init(device.type)
    if device.type == "cpu":
        threads = cfg.threads or max(1, (os.cpu_count() or 1) // dist.world)
        torch.set_num_threads(threads)
    log = _Log(cfg.quiet, dist.main)
    run_dir = cfg.out or (default_run_dir(cfg) if dist.main else None)
    run_dir = os.path.abspath(dist.broadcast(run_dir))
    cfg.out = run_dir
    if dist.main:
        os.makedirs(run_dir, exist_ok=True)
        atomic_write_text(os.path.join(run_dir, "config.json"), json.dumps(cfg.to_dict(), indent=1))
    t_start = time.time()

    train_src, val_src, k, skipped, desc = _load_data(cfg, log, dist)
    log(desc)
    if dist.main and cfg.data is not None:
        from .readers import LandmarkTable
        LandmarkTable([], np.zeros((0, k, 2)), skipped).write_skipped(os.path.join(run_dir, "skipped.csv"))
        if skipped:
            log(f"skipped {len(skipped)} rows: see {os.path.join(run_dir, 'skipped.csv')} "
                f"(first: {skipped[0]['file']} {skipped[0]['row'] or ''}: {skipped[0]['reason']})")
    pre, aug, opts = _pipelines(cfg)
    scheme = _scheme(cfg, k, aug)
    train_pipe = Compose(pre + aug, scheme=scheme, **opts)
    pre_pipe = Compose(preprocess_steps(cfg.size, cfg.preprocess), scheme=scheme)
    mean_norm = _mean_shape(train_src, pre_pipe, cfg.size)

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.backbone, k, pretrained=cfg.pretrained, weights=cfg.weights, mean_shape=mean_norm)
    model.to(device)
    channels_last = cfg.channels_last and device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp_dtype = None
    if device.type == "cuda" and cfg.amp != "off":
        if cfg.amp == "fp16" or (cfg.amp == "auto" and not torch.cuda.is_bf16_supported()):
            amp_dtype = torch.float16
        else:
            amp_dtype = torch.bfloat16
    elif cfg.amp in ("bf16", "fp16"):
        log(f"--amp {cfg.amp}: mixed precision is for CUDA; training in float32 on {device.type}")
    net = model
    if dist.on:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    decay, no_decay = [], []
    for n_, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=cfg.lr)
    elif cfg.optimizer == "adam":
        opt = torch.optim.Adam(groups, lr=cfg.lr)
    else:
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    pin = device.type == "cuda"
    train_ds = D.LandmarkDataset(train_src, train_pipe, cfg.seed, train=True)
    val_ds = D.LandmarkDataset(val_src, pre_pipe, cfg.seed, train=False)
    train_sampler = D.EpochSampler(len(train_ds), dist.world, dist.rank, shuffle=True, seed=cfg.seed)
    val_sampler = D.EpochSampler(len(val_ds), dist.world, dist.rank, shuffle=False, seed=cfg.seed)
    steps_per_epoch = math.ceil(len(train_sampler) / cfg.batch_size)
    sched = LRSchedule(cfg.scheduler, cfg.lr, steps_per_epoch, cfg.epochs, cfg.warmup, cfg.restart_epochs)

    history, best, start_epoch, start_step, global_step = [], None, 0, 0, 0
    run_loss = [0.0, 0]
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        if ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        _set_rng_state(ck["rng"])
        history, best = list(ck.get("history", [])), ck.get("best")
        start_epoch, start_step, global_step = ck["epoch"], ck.get("step_in_epoch", 0), ck["global_step"]
        run_loss = list(ck.get("running_loss", [0.0, 0]))
        if start_step and history and history[-1]["epoch"] == start_epoch + 1:
            history.pop()  # the row of an epoch cut short by --time-budget: it is redone now
        if start_step and ck.get("world", 1) != dist.world:
            log("resuming with a different number of processes: restarting the interrupted epoch")
            global_step -= start_step
            start_step, run_loss = 0, [0.0, 0]
        log(f"resumed {run_dir} at epoch {start_epoch + 1}, step {start_step} of {steps_per_epoch}")
        t_start -= history[-1]["elapsed_s"] if history else 0.0

    mean_t = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255
    std_t = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255
    info = {"backbone": cfg.backbone, "n_points": k, "input_size": [cfg.size, cfg.size]}
    base_pred = _baseline(val_src, pre_pipe, mean_norm, cfg.size)

    def state(epoch_done, step_in_epoch):
        return {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "scaler": scaler.state_dict(), "epoch": epoch_done, "step_in_epoch": step_in_epoch,
            "global_step": global_step, "running_loss": run_loss, "rng": _rng_state(), "world": dist.world,
            "preprocessing": pre_pipe.to_dict(), "train_pipeline": train_pipe.to_dict(),
            "scheme": scheme.to_dict(), "config": cfg.to_dict(), "model_info": info, "history": history,
            "best": best, "mean_shape": mean_norm.tolist(), "time": time.time(),
        }

    if dist.main and not cfg.quiet:
        log(f"model {cfg.backbone} at {cfg.size}x{cfg.size} ({cfg.preprocess}), {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
            f"parameters, on {device}{' x' + str(dist.world) + ' processes' if dist.on else ''}"
            f"{', AMP ' + str(amp_dtype).split('.')[-1] if amp_dtype else ''}; run folder {run_dir}")
        if len(val_src):
            b = M.summary(base_pred, val_src.points, scheme)
            log(f"mean-shape baseline on validation: MSE {b['mse']:.2f}  NME {b['nme']:.4f}  FR@0.08 {b['fr']:.1%}")

    budget_s = cfg.time_budget * 60 if cfg.time_budget else None
    stopped = None
    last_ck = time.time()
    train_loader = D.make_loader(train_ds, cfg.batch_size, cfg.workers, train_sampler, pin)
    val_loader = D.make_loader(val_ds, cfg.batch_size * 2, cfg.workers, val_sampler, pin) if len(val_ds) else None
    from tqdm.auto import tqdm
    show = dist.main and not cfg.quiet

    for epoch in range(start_epoch, cfg.epochs):
        net.train()
        first = start_step if epoch == start_epoch else 0
        if first == 0:
            run_loss = [0.0, 0]
        train_sampler.set_epoch(epoch, first * cfg.batch_size)
        t0, seen = time.time(), 0
        bar = tqdm(total=steps_per_epoch, initial=first, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not show,
                   leave=False, dynamic_ncols=True, unit="batch")
        step = first
        for batch in train_loader:
            for g in opt.param_groups:
                g["lr"] = sched.lr(global_step)
            x = normalise(batch["image"].to(device, non_blocking=pin), mean_t, std_t, channels_last)
            target = batch["target"].to(device, non_blocking=pin)
            mask = batch["mask"].to(device, non_blocking=pin)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                out = net(x)
            pred = out.float().view(out.shape[0], k, 2)
            loss = landmark_loss(pred, target, mask, cfg.loss, cfg.trim)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.clip > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            scaler.step(opt)
            scaler.update()
            lv = float(loss.detach())
            if not math.isfinite(lv):
                raise FloatingPointError(f"epoch {epoch + 1}, step {step}: the loss is {lv}; lower --lr or use --clip")
            run_loss[0] += lv * len(x)
            run_loss[1] += len(x)
            seen += len(x)
            step += 1
            global_step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{run_loss[0] / max(1, run_loss[1]):.4g}")
            over = budget_s is not None and time.time() - t_start > budget_s
            due = (cfg.checkpoint_steps and step % cfg.checkpoint_steps == 0) or \
                (time.time() - last_ck > cfg.checkpoint_minutes * 60)
            if due and step < steps_per_epoch and not over:
                if dist.main:
                    save_checkpoint(os.path.join(run_dir, "last.pt"), state(epoch, step))
                last_ck = time.time()
            if dist.on and budget_s is not None:  # every process stops at the same step
                over = bool(dist.broadcast(over))
            if over:
                stopped = f"time budget of {cfg.time_budget} min reached in epoch {epoch + 1} at step {step}"
                break
        bar.close()
        train_s = time.time() - t0
        # on the training device: NCCL reduces CUDA tensors only
        tl = torch.tensor([run_loss[0], run_loss[1]], dtype=torch.float64, device=device)
        if dist.on:
            torch.distributed.all_reduce(tl)
        row = {"epoch": epoch + 1, "train_loss": float(tl[0] / max(1, tl[1])), "lr": sched.lr(max(0, global_step - 1)),
               "train_img_s": seen * dist.world / max(train_s, 1e-9)}
        if val_loader is not None:
            val = _validate(net, val_loader, val_sampler, device, mean_t, std_t, channels_last, amp_dtype, k,
                            cfg, dist, show)
            m = M.summary(val["pred"], val_src.points, scheme)
            b = M.summary(base_pred, val_src.points, scheme)
            row.update(val_loss=val["loss"], mse=m["mse"], nme=m["nme"], fr=m["fr"], base_mse=b["mse"],
                       base_nme=b["nme"], base_fr=b["fr"])
            sched.epoch_end(val["loss"])
        else:
            sched.epoch_end(row["train_loss"])
        row["epoch_s"] = time.time() - t0
        row["elapsed_s"] = time.time() - t_start
        history.append(row)
        score = row.get("nme", row["train_loss"])
        improved = best is None or score < best["score"]
        if improved:
            best = {"epoch": epoch + 1, "score": score, "metric": "nme" if "nme" in row else "train_loss"}
        partial = stopped is not None and step < steps_per_epoch
        if dist.main:
            st = state(epoch, step) if partial else state(epoch + 1, 0)
            save_checkpoint(os.path.join(run_dir, "last.pt"), st)
            if improved:
                save_checkpoint(os.path.join(run_dir, "best.pt"), st)
            _write_logs(run_dir, history)
            try:
                plot_curves(run_dir, history)
            except Exception as e:  # a plot must never kill a run
                log(f"could not draw curves.png: {e}")
        last_ck = time.time()
        msg = f"epoch {epoch + 1}/{cfg.epochs}  train loss {row['train_loss']:.4g}"
        if "mse" in row:
            msg += (f"  val loss {row['val_loss']:.4g}  MSE {row['mse']:.2f} (mean shape {row['base_mse']:.2f})"
                    f"  NME {row['nme']:.4f} ({row['base_nme']:.4f})  FR {row['fr']:.1%} ({row['base_fr']:.1%})")
        msg += f"  lr {row['lr']:.2g}  {row['train_img_s']:.0f} img/s  {row['epoch_s']:.0f}s"
        log(msg + ("  *" if improved else ""))
        dist.barrier()
        if stopped:
            log(stopped)
            break

    summary = {"run_dir": run_dir, "epochs": len(history), "best": best, "last": history[-1] if history else None,
               "stopped": stopped, "skipped": len(skipped), "elapsed_s": time.time() - t_start,
               "train_images": len(train_src), "val_images": len(val_src)}
    if dist.main:
        atomic_write_text(os.path.join(run_dir, "summary.json"), json.dumps(summary, indent=1))
        last = history[-1] if history else {}
        if "mse" in last:
            bm = min(history, key=lambda h: h["nme"])
            log.always(f"done: {len(history)} epochs in {summary['elapsed_s']:.0f}s; best epoch {bm['epoch']}: "
                       f"val MSE {bm['mse']:.2f} vs mean shape {bm['base_mse']:.2f}, NME {bm['nme']:.4f} vs "
                       f"{bm['base_nme']:.4f}; {len(skipped)} rows skipped; {run_dir}")
        else:
            log.always(f"done: {len(history)} epochs in {summary['elapsed_s']:.0f}s; {run_dir}")
    dist.barrier()
    dist.close()
    return summary


def _baseline(src, pre_pipe, mean_norm, size) -> np.ndarray:
    """The mean shape (model frame) mapped back to every image's original pixels. Shape: (N, K, 2)."""
    mean_px = mean_norm * size - 0.5
    out = np.empty(src.points.shape)
    for i, wh in enumerate(src.sizes):
        m, _ = D.preprocess_matrix(pre_pipe, (int(wh[0]), int(wh[1])))
        out[i] = augkit.geometry.apply_points(augkit.geometry.invert(m), mean_px)
    return out


def _validate(net, loader, sampler, device, mean_t, std_t, channels_last, amp_dtype, k, cfg, dist, show) -> dict:
    from tqdm.auto import tqdm
    net.eval()
    sampler.set_epoch(0)
    idx, preds, loss_sum, n = [], [], 0.0, 0
    with torch.no_grad():
        for batch in tqdm(loader, desc="validation", disable=not show, leave=False, dynamic_ncols=True, unit="batch"):
            x = normalise(batch["image"].to(device), mean_t, std_t, channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                out = net(x)
            pred = out.float().view(out.shape[0], k, 2)
            loss = landmark_loss(pred, batch["target"].to(device), batch["mask"].to(device), cfg.loss)
            loss_sum += float(loss) * len(x)
            n += len(x)
            px = decode(out.float(), (cfg.size, cfg.size)).cpu().numpy().astype(np.float64)
            preds.append(D.invert_batch(batch["matrix"].numpy(), px))
            idx.append(batch["index"].numpy())
    parts = dist.gather((np.concatenate(idx) if idx else np.zeros(0, int),
                         np.concatenate(preds) if preds else np.zeros((0, k, 2)), loss_sum, n))
    total = len(loader.dataset)
    full = np.full((total, k, 2), np.nan)
    for ii, pp, _, _ in parts:
        full[ii] = pp
    return {"pred": full, "loss": sum(p[2] for p in parts) / max(1, sum(p[3] for p in parts))}
