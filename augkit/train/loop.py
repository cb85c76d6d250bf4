"""The training loop behind ``augkit train``: one :class:`Trainer` owns the run's state (model,
optimiser, schedule, scaler, EMA, step, best: a :class:`~augkit.train.state.TrainState`) and calls
its hooks (:mod:`augkit.train.hooks`) at fixed points.

:func:`run` resolves the config (or the resumed run's), builds the data, model and optimiser
(:mod:`augkit.train.builders`), then alternates :func:`train_one_epoch` and :func:`validate`
(original pixels, against the mean-shape baseline), saving the state into the
:class:`~augkit.run_folder.RunFolder`. Under ``torchrun`` (``WORLD_SIZE`` > 1) it trains with
DistributedDataParallel (gloo on CPU, NCCL on CUDA): sharded sampling, rank 0 verifies the images
and writes every file, and the ranks exchange a stop flag every few steps.

The features around the loop are hooks, each switched on by its option (the ``hook`` of its
:class:`~augkit.train.config.TrainConfig` field): ``--ema`` (:mod:`augkit.train.ema`),
``--freeze-epochs`` (:mod:`augkit.train.freeze`), ``--tensorboard`` (:mod:`augkit.train.tb`);
``--lr auto`` (:mod:`augkit.train.lr_find`: a range test on the built run, undone, at ``setup``);
the checkpoints and the epoch lines are hooks too. ``--lr-find`` alone is the range test without
training.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from augkit import metrics
from augkit.compose import Compose
from augkit.errors import InputError
from augkit.models.checkpoint import checkpoint_bytes, read_checkpoint
from augkit.models.heads import head_info
from augkit.run_folder import RunFolder, RunFolderError
from augkit.schemes import Scheme, get_scheme
from augkit.signals import StopRequest, Terminated

from . import builders
from . import data as train_data
from .config import TrainConfig, option_fields, resolve_config
from .dist import Dist
from .epoch import Engine, StopRule, ValidationStopped, train_one_epoch, validate
from .checkpoints import Checkpoints
from .hooks import Hook
from .run_steps import claim_folder
from .run_steps import finish as _finish
from .run_steps import record_skips as _record_skips
from .run_steps import start_folder as _start_folder
from .schedule import LRSchedule
from .state import TrainState

__all__ = ["run", "ResumeConflict", "Trainer", "Progress", "hooks_for"]

# options a --resume may change: how long, how loud, how parallel (their fields say so)
RESUME_MAY_CHANGE = tuple(f.name for f in option_fields() if f.metadata["resume"])


def _peak_lr(cfg: TrainConfig) -> float:
    """The peak LR to build the optimiser and schedule with (a stand-in before --lr auto's sweep)."""
    lr = cfg.lr
    return 1e-3 if lr is None or lr == "auto" else float(lr)


@dataclass
class Trainer:
    """One training run: what one invocation of :func:`run` works with (built by :func:`_build`),
    and the hooks it calls (:mod:`augkit.train.hooks`)."""

    cfg: TrainConfig
    dist: Dist
    log: _Log
    folder: RunFolder
    data: builders.TrainData
    scheme: Scheme
    fixed: dict                  # the checkpoint's fixed facts (pipelines, scheme, config, ...)
    state: TrainState
    engine: Engine
    train_loader: DataLoader
    train_sampler: train_data.EpochSampler
    val_loader: DataLoader | None
    steps_per_epoch: int
    base_pred: np.ndarray
    skips: dict
    elapsed_before: float = 0.0  # seconds of the earlier invocations of this run
    train_ds: train_data.LandmarkDataset | None = None
    stop: StopRule | None = None  # the stop rule of the epochs (its request: the stop signals)
    hooks: list = dataclasses.field(default_factory=list)
    frozen: bool = False          # this epoch trains the head alone (set by the --freeze-epochs hook)
    improved: bool = False        # the last recorded epoch is the best so far
    stop_reason: str | None = None  # a hook asked to end the run after this epoch

    def request_stop(self, reason: str) -> None:
        """End the run after the current epoch (its state saved, like a finished run); ``reason``
        is logged and recorded as ``stopped`` in summary.json."""
        self.stop_reason = self.stop_reason or reason

    def set_peak_lr(self, lr: float) -> None:
        """The run's peak LR, found after the run was built (``--lr auto``): the config that the
        run saves and runs with from here on, and the schedule rebuilt for it."""
        self.cfg = dataclasses.replace(self.cfg, lr=lr)
        self.state.scheduler = _schedule(self.cfg, self.steps_per_epoch)
        self.fixed["config"] = self.cfg.to_dict()

    def checkpoint(self) -> bytes:
        """The checkpoint of the state as it is now (the bytes of ``last.pt`` / ``best.pt``)."""
        return checkpoint_bytes(self.state.to_checkpoint(self.dist.world, self.fixed))

    def call(self, point: str, *args) -> None:
        """Call ``point`` (``"step"``, ``"epoch_end"``, ...) of every hook, in order."""
        for hook in self.hooks:
            getattr(hook, point)(self, *args)


class Progress(Hook):
    """The line each epoch prints (rank 0, unless --quiet)."""

    def epoch_end(self, t: Trainer, row: dict) -> None:
        t.log(_epoch_line(t.cfg, row) + ("  *" if t.improved else ""))


def hooks_for(cfg: TrainConfig) -> list:
    """The run's hooks: :class:`~augkit.train.checkpoints.Checkpoints` and :class:`Progress`, then
    the hook of every option that is set, in the order of the options (the ``hook`` metadata of
    the :class:`TrainConfig` fields)."""
    hooks: list = [Checkpoints(), Progress()]
    for f in option_fields():
        if not f.metadata["hook"]:
            continue
        module, name = f.metadata["hook"].split(":")
        cls = getattr(importlib.import_module(module), name)
        value = getattr(cfg, f.name)
        if cls.applies(value) if hasattr(cls, "applies") else value not in (None, False, 0):
            hooks.append(cls())
    return hooks


def run(cfg: TrainConfig, resume: str | None = None, replace_unsaved: bool = False) -> dict:
    """Train (or resume ``resume``, a run folder or a ``last.pt``). Returns the summary dict.
    ``replace_unsaved`` (``--auto-resume``): a new run may start in an ``--out`` folder whose run
    never wrote a checkpoint (stopped before its first one)."""
    dist = Dist()
    ck = None
    if resume:
        if cfg.lr_find:
            raise InputError("--lr-find: the range test starts a new run's sweep; it cannot --resume a run")
        ck, cfg = _resume_config(cfg, resume)
    cfg = resolve_config(cfg)
    if cfg.tensorboard:
        from augkit.extras import require_extra
        require_extra("tb", "augkit train --tensorboard")
    device = builders.pick_device(cfg, dist)
    dist.init(device.type)
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // dist.world))
    folder = claim_folder(cfg, dist, ck is not None, note=_Log(cfg.quiet, True).always, replace_unsaved=replace_unsaved)
    cfg = dataclasses.replace(cfg, out=folder.path)   # resolved: from here on the run's config does not change
    try:
        return _train(cfg, dist, device, ck)
    finally:
        if dist.main:
            folder.release_lock()


def _train(cfg: TrainConfig, dist: Dist, device: torch.device, ck: dict | None) -> dict:
    """The body of :func:`run`, inside the run folder's lock."""
    r = _build(cfg, dist, device, ck)
    r.hooks = hooks_for(cfg)
    r.call("setup")          # --lr auto's range test among them: r.cfg then holds the LR it found
    if cfg.lr_find:          # the range test alone: no training, no checkpoint
        from .lr_find import range_test_only
        found = range_test_only(r)
        dist.barrier()
        dist.close()
        return found
    _start_folder(r, ck)
    request = StopRequest()
    stop = r.stop = StopRule(dist, cfg.time_budget, cfg.checkpoint_steps, request)
    stopped = None
    try:
        r.call("start", ck is not None)
        with request.listening():
            stopped = _epochs(r, stop)
    finally:
        r.call("close")
    summary = _finish(r, stopped, stop)
    dist.barrier()
    dist.close()
    return summary


def _epochs(r: Trainer, stop: StopRule) -> str | None:
    """Train the remaining epochs; the reason the time budget or a hook stopped it early (None: it
    did not). A stop signal (SIGTERM / SIGUSR1) ends it by :func:`_stop_for_signal`."""
    cfg = r.cfg
    assert cfg.epochs is not None and cfg.batch_size is not None   # resolved
    for epoch in range(r.state.epoch, cfg.epochs):
        t0 = time.time()
        if r.state.step_in_epoch == 0:
            r.state.running_loss = [0.0, 0]
        r.frozen = False
        r.call("epoch_start", epoch)
        r.train_sampler.set_epoch(epoch, r.state.step_in_epoch * cfg.batch_size)
        seen, why = train_one_epoch(r.state, r.engine, r.train_loader, epoch, r.steps_per_epoch, stop,
                                    lambda: r.call("sync"), r.skips, show=r.dist.main and not cfg.quiet,
                                    frozen=r.frozen, on_step=lambda loss, lr: r.call("step", loss, lr))
        if why == "signal":  # the state after this step (at the epoch's last step: before its validation)
            _stop_for_signal(r, stop)
        try:
            _end_epoch(r, epoch, seen, t0, stop)
        except ValidationStopped:  # single process: the signal came during the validation
            _stop_for_signal(r, stop)
        # under DDP a signal during the validation is seen here, after the epoch's checkpoint
        # (after the last epoch the run simply finishes)
        if epoch + 1 < cfg.epochs and stop.signal_reached_any(r.engine.device):
            _stop_for_signal(r, stop, saved=True)
        if why == "budget":
            stopped = f"time budget of {cfg.time_budget} min reached in epoch {epoch + 1} at step " \
                      f"{r.state.step_in_epoch or r.steps_per_epoch}"
            r.log(stopped)
            return stopped
        if r.stop_reason:
            r.log(r.stop_reason)
            return r.stop_reason
    return None


def _stop_for_signal(r: Trainer, stop: StopRule, saved: bool = False) -> None:
    """A stop signal reached some rank: rank 0 writes ``last.pt`` at this step (unless the epoch's
    end just ``saved`` it), every rank waits for it, and :class:`~augkit.signals.Terminated` ends the
    command (exit 128 + the signal: 143 for SIGTERM, 138 for SIGUSR1)."""
    import signal
    st = r.state
    if r.dist.main and not saved:
        r.folder.save_last(r.checkpoint())
    r.dist.barrier()
    if not st.step_in_epoch:
        where = f"the end of epoch {st.epoch}"
    elif st.step_in_epoch >= r.steps_per_epoch:
        where = f"epoch {st.epoch + 1}, all {st.step_in_epoch} steps, not yet validated"
    else:
        where = f"epoch {st.epoch + 1}, step {st.step_in_epoch}"
    signum = stop.request.signum if stop.request is not None and stop.request.signum else signal.SIGTERM
    r.dist.close()
    raise Terminated(signum, f"{r.folder.last_pt} holds {where}; continue with: augkit train --resume "
                             f"{r.folder.path}")


def _build(cfg: TrainConfig, dist: Dist, device: torch.device, ck: dict | None) -> Trainer:
    """Data, pipelines, model, optimiser, schedule and loaders; the state restored from ``ck``.
    The run folder gets its first files only once all of this succeeded."""
    log = _Log(cfg.quiet, dist.main)
    assert cfg.out is not None and cfg.size is not None and cfg.batch_size is not None and cfg.epochs is not None
    folder = RunFolder(cfg.out)
    # the --aug and --scheme files first: a bad one is refused before the data is read
    pre, aug, opts = builders.pipelines(cfg)
    given = get_scheme(cfg.scheme) if cfg.scheme else None
    data = builders.load_data(cfg, dist)
    log(data.description)
    scheme = builders.choose_scheme(cfg, data.n_points, aug, given)
    train_pipe = Compose(pre + aug, scheme=scheme, **opts)
    pre_pipe = builders.eval_pipeline(cfg, scheme, opts)
    mean_norm = builders.mean_shape(data.train, pre_pipe, cfg.size)
    model = builders.make_model(cfg, data.n_points, mean_norm, device)
    amp_dtype = builders.amp_dtype_for(cfg, device, log)
    net = model if not dist.on else torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=cfg.freeze_epochs > 0)  # the frozen backbone gets no gradients
    engine = Engine(net, model, device, amp_dtype, cfg.channels_last and device.type == "cuda", data.n_points,
                    cfg.size, cfg.loss, cfg.trim, cfg.clip)
    train_ds = train_data.LandmarkDataset(data.train, train_pipe, cfg.seed, train=True, strict=cfg.strict)
    val_ds = train_data.LandmarkDataset(data.val, pre_pipe, cfg.seed, train=False, strict=cfg.strict)
    train_sampler = train_data.EpochSampler(len(train_ds), dist.world, dist.rank, shuffle=True, seed=cfg.seed)
    steps_per_epoch = math.ceil(len(train_sampler) / cfg.batch_size)
    state = TrainState(model, builders.make_optimizer(cfg, model, _peak_lr(cfg)), _schedule(cfg, steps_per_epoch),
                       torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16))
    fixed = {"preprocessing": pre_pipe.to_dict(), "train_pipeline": train_pipe.to_dict(), "scheme": scheme.to_dict(),
             "config": cfg.to_dict(), "mean_shape": mean_norm.tolist(),
             "model_info": {"backbone": cfg.backbone, "n_points": data.n_points, "input_size": [cfg.size, cfg.size],
                            "head": head_info(engine.landmark_head)}}
    val_loader = None
    if len(val_ds):
        val_loader = train_data.make_loader(val_ds, cfg.batch_size * 2, cfg.workers,
                                            builders.ShardSampler(len(val_ds), dist.world, dist.rank), engine.pin)
    r = Trainer(cfg, dist, log, folder, data, scheme, fixed, state, engine,
             train_data.make_loader(train_ds, cfg.batch_size, cfg.workers, train_sampler, engine.pin), train_sampler,
             val_loader, steps_per_epoch, builders.baseline(data.val, pre_pipe, mean_norm, cfg.size), {},
             train_ds=train_ds)
    return r


def _schedule(cfg: TrainConfig, steps_per_epoch: int) -> LRSchedule:
    assert cfg.epochs is not None   # resolved
    return LRSchedule(cfg.scheduler, _peak_lr(cfg), steps_per_epoch, cfg.epochs, cfg.warmup, cfg.restart_epochs,
                      frozen_epochs=cfg.freeze_epochs)


def _val_metrics(r: Trainer) -> dict:
    """Validation loss and MSE / NME / FR (model, or its --ema average, and mean-shape baseline) on
    the decodable images; with --tensorboard the worst images too."""
    request = r.stop.request if r.stop is not None and not r.dist.on else None
    val = validate(r.engine, r.val_loader, r.dist, len(r.data.val), r.skips, show=r.dist.main and not r.cfg.quiet,
                   model=r.state.eval_model(), stop_check=(lambda: request.requested) if request is not None else None)
    r.call("validation", val["pred"])
    ok = np.isfinite(val["pred"]).all(axis=(1, 2))
    if not ok.any():
        return {"val_loss": val["loss"]}
    m = metrics.summary(val["pred"][ok], r.data.val.points[ok], r.scheme)
    b = metrics.summary(r.base_pred[ok], r.data.val.points[ok], r.scheme)
    return dict(val_loss=val["loss"], mse=m["mse"], nme=m["nme"], fr=m["fr"], base_mse=b["mse"],
                base_nme=b["nme"], base_fr=b["fr"])


def _end_epoch(r: Trainer, epoch: int, seen: int, t0: float, stop: StopRule) -> None:
    """Reduce the epoch's loss, validate, record the row, save the state and logs."""
    train_s = time.time() - t0
    st = r.state
    # on the training device: NCCL reduces CUDA tensors only
    loss_total = torch.tensor(st.running_loss, dtype=torch.float64, device=r.engine.device)
    if r.dist.on:
        torch.distributed.all_reduce(loss_total)
    row = {"epoch": epoch + 1, "train_loss": float(loss_total[0]) / max(1.0, float(loss_total[1])),
           "lr": st.scheduler.lr(max(0, st.global_step - 1)), "train_img_s": seen * r.dist.world / max(train_s, 1e-9)}
    if r.val_loader is not None:
        row.update(_val_metrics(r))
    st.scheduler.epoch_end(row.get("val_loss", row["train_loss"]))
    row["epoch_s"] = time.time() - t0
    row["elapsed_s"] = r.elapsed_before + time.time() - stop.session_start
    r.improved = st.record_epoch(row)
    if st.step_in_epoch >= r.steps_per_epoch:  # a whole epoch: the next starts at its step 0
        st.epoch, st.step_in_epoch = epoch + 1, 0
    _record_skips(r)
    r.call("epoch_end", row)   # the first hook saves the state
    r.dist.barrier()


def _epoch_line(cfg: TrainConfig, row: dict) -> str:
    msg = f"epoch {row['epoch']}/{cfg.epochs}  train loss {row['train_loss']:.4g}"
    if "mse" in row:
        msg += (f"  val loss {row['val_loss']:.4g}  MSE {row['mse']:.2f} (mean shape {row['base_mse']:.2f})"
                f"  NME {row['nme']:.4f} ({row['base_nme']:.4f})  FR {row['fr']:.1%} ({row['base_fr']:.1%})")
    return msg + f"  lr {row['lr']:.2g}  {row['train_img_s']:.0f} img/s  {row['epoch_s']:.0f}s"


# ``--resume`` given an option that contradicts the run it continues, and every other refusal of a run
# folder (a run already there, a live lock, changed inputs): the CLI shows them as one line
ResumeConflict = RunFolderError


def _resume_config(cfg: TrainConfig, resume: str) -> tuple[dict, TrainConfig]:
    """(checkpoint, the run's own config updated with what a resume may change). Options that
    contradict the run raise :class:`ResumeConflict`."""
    folder = RunFolder(resume if os.path.isdir(resume) else os.path.dirname(os.path.abspath(resume)))
    ck_path = resume if os.path.isfile(resume) else folder.resume_checkpoint()
    if ck_path is None:
        raise FileNotFoundError(f"--resume {resume}: no {folder.LAST_NAME} (nor {folder.BEST_NAME}) there")
    ck = read_checkpoint(ck_path)
    saved = TrainConfig.from_dict(ck["config"])
    defaults = TrainConfig()
    clashes = []
    auto_lr = folder.has(folder.LR_FIND_JSON_NAME)  # a run started with --lr auto records the LR it found
    for f in dataclasses.fields(TrainConfig):
        given, was = getattr(cfg, f.name), getattr(saved, f.name)
        if f.name in RESUME_MAY_CHANGE or given is None or given == getattr(defaults, f.name) or given == was:
            continue
        if f.name == "lr" and given == "auto" and auto_lr:
            continue
        if f.name == "data" and was is not None and os.path.abspath(given) == os.path.abspath(was):
            continue
        clashes.append(f"--{f.name.replace('_', '-')} {given} (the run used {was})")
    run_dir = os.path.dirname(os.path.abspath(ck_path))
    if clashes:
        raise ResumeConflict(
            f"--resume {run_dir}: {'; '.join(clashes)}: --resume continues a run exactly as it was started. "
            f"To change the data, size, learning rate or optimiser, start a new run from its weights: "
            f"augkit train --weights {RunFolder(run_dir).last_pt} ... --out NEW_FOLDER")
    changes = {k: getattr(cfg, k) for k in RESUME_MAY_CHANGE
               if getattr(cfg, k) is not None and getattr(cfg, k) != getattr(defaults, k)}
    if cfg.time_budget is None:  # a budget is for one session: a resume runs to the end unless given one
        changes["time_budget"] = None
    changes["out"] = run_dir
    return ck, dataclasses.replace(saved, **changes)


class _Log:
    """Progress lines from rank 0 (``always`` even with --quiet)."""

    def __init__(self, quiet: bool, main: bool):
        self.quiet, self.main = quiet, main

    def __call__(self, msg: str) -> None:
        if self.main and not self.quiet:
            from tqdm.auto import tqdm
            tqdm.write(msg)

    def always(self, msg: str) -> None:
        if self.main:
            print(msg, flush=True)
