"""One epoch of training and one pass of validation: :class:`Engine` (how a batch goes through the
model and the loss), :class:`StopRule` (time budget and the ranks' shared stop flag),
:func:`train_one_epoch` and :func:`validate`. :func:`augkit.train.loop.run` drives them."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from . import data as train_data
from .dist import SYNC_EVERY, Dist
from .freeze import train_mode
from augkit.models.heads import LandmarkHead, find_head
from augkit.models.model_input import ModelInput
from .state import TrainState

__all__ = ["Engine", "StopRule", "ValidationStopped", "train_one_epoch", "validate"]

@dataclass
class Engine:
    """How a batch goes through the model: the model input (device, precision, memory format,
    normalisation: :class:`~augkit.models.model_input.ModelInput`) and the loss."""

    net: torch.nn.Module          # the model, DDP-wrapped under DDP
    model: torch.nn.Module        # the bare model
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    n_points: int
    size: int
    loss: str
    trim: float = 0.0
    clip: float = 0.0

    head: LandmarkHead | None = None   # default: the model's own (find_head)

    def __post_init__(self):
        self.input = ModelInput(self.device, self.amp_dtype, self.channels_last)
        self.pin = self.input.pin
        if self.head is None:
            self.head = find_head(self.model, self.n_points, (self.size, self.size), self.loss)

    def forward(self, net: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC batch -> the head's raw float32 outputs (N, D)."""
        return self.input(net, images)

    def batch_loss(self, out: torch.Tensor, batch: dict, trim: float = 0.0) -> torch.Tensor:
        target = batch["target"].to(self.device, non_blocking=self.pin)
        mask = batch["mask"].to(self.device, non_blocking=self.pin)
        return self.landmark_head.loss(out, target, mask, trim)

    @property
    def landmark_head(self) -> LandmarkHead:
        """The head (given, or the model's own: set when the engine is made)."""
        assert self.head is not None
        return self.head


class StopRule:
    """When the processes stop together: the time budget of THIS invocation, a stop signal
    (SIGTERM / SIGUSR1, recorded by ``request``, an :class:`augkit.signals.StopRequest`) and a
    non-finite loss on any rank. Single process: checked every step. DDP: flags exchanged every
    ``SYNC_EVERY`` steps, at checkpoint steps and at the end of the epoch, so every rank stops at
    the same step."""

    def __init__(self, dist: Dist, budget_min: float | None, checkpoint_steps: int = 0, request=None):
        self.dist = dist
        self.budget_s = budget_min * 60 if budget_min else None
        self.session_start = time.time()
        self.checkpoint_steps = checkpoint_steps
        self.request = request               # a StopRequest (None: signals are not listened to)
        self.bad_loss: tuple | None = None   # (epoch, step, value) of the first non-finite loss here

    def is_sync_step(self, step: int, steps_per_epoch: int) -> bool:
        if not self.dist.on:
            return True
        return step % SYNC_EVERY == 0 or step >= steps_per_epoch or \
            bool(self.checkpoint_steps and step % self.checkpoint_steps == 0)

    def over_budget(self) -> bool:
        return self.budget_s is not None and time.time() - self.session_start > self.budget_s

    def check(self, device) -> str | None:
        """At a sync step: raise if any rank saw a non-finite loss; ``"signal"`` when a stop signal
        reached any rank, ``"budget"`` when the budget is spent, else None."""
        bad, over, signalled = self.dist.any_flags([self.bad_loss is not None, self.over_budget(), self._asked()],
                                                   device)
        if bad:
            if self.bad_loss is not None:
                e, s, v = self.bad_loss
                where = f"epoch {e}, step {s}: the loss is {v}"
            else:
                where = "another process stopped on a non-finite loss"
            rank = f" (process {self.dist.rank} of {self.dist.world})" if self.dist.on else ""
            raise FloatingPointError(f"{where}{rank}; lower --lr or use --clip")
        if signalled:
            return "signal"
        return "budget" if over else None

    def signal_reached_any(self, device) -> bool:
        """Outside the steps (after a validation): did a stop signal reach any rank? Every rank
        must call it (one small all_reduce under DDP)."""
        return self.dist.any_flags([self._asked()], device)[0]

    def _asked(self) -> bool:
        """A stop signal reached this process."""
        return self.request is not None and self.request.requested


def optimiser_step(engine: Engine, state: TrainState, loss: torch.Tensor) -> None:
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    if engine.clip > 0:
        state.scaler.unscale_(state.optimizer)
        torch.nn.utils.clip_grad_norm_(engine.model.parameters(), engine.clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()


def train_one_epoch(state: TrainState, engine: Engine, loader, epoch: int, steps_per_epoch: int,
                    stop: StopRule, save_mid_epoch, skips: dict, show: bool = False, frozen: bool = False,
                    on_step=None) -> tuple[int, str | None]:
    """Train from ``state.step_in_epoch`` to the end of epoch ``epoch`` (0-based) or the stop rule.

    ``save_mid_epoch()`` is called at sync steps (it decides whether a checkpoint is due).
    ``frozen``: the head alone trains (backbone in eval mode; its gradients are off by
    :func:`~augkit.train.freeze.set_frozen`). ``on_step(loss, lr)`` after each optimiser step,
    before ``state.global_step`` counts it (the trainer's ``step`` hooks: the EMA update, ...).
    Returns (images seen by this process, why it stopped early: ``"budget"``, ``"signal"`` or None).
    """
    from tqdm.auto import tqdm
    engine.net.train()
    if frozen:
        train_mode(engine.model, True)
    bar = tqdm(total=steps_per_epoch, initial=state.step_in_epoch, desc=f"epoch {epoch + 1}", disable=not show,
               leave=False, dynamic_ncols=True, unit="batch")
    seen, over = 0, None
    for batch in loader:
        lr = state.scheduler.lr(state.global_step)
        for g in state.optimizer.param_groups:
            g["lr"] = lr
        loss = engine.batch_loss(engine.forward(engine.net, batch["image"]), batch, engine.trim)
        optimiser_step(engine, state, loss)
        loss_value = float(loss.detach())
        if on_step is not None:
            on_step(loss_value, lr)
        _note_skips(batch, skips)
        if not math.isfinite(loss_value) and stop.bad_loss is None:
            stop.bad_loss = (epoch + 1, state.step_in_epoch, loss_value)
        state.running_loss[0] += loss_value * len(batch["index"])
        state.running_loss[1] += len(batch["index"])
        seen += len(batch["index"])
        state.step_in_epoch += 1
        state.global_step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{state.running_loss[0] / max(1, state.running_loss[1]):.4g}")
        if stop.is_sync_step(state.step_in_epoch, steps_per_epoch):
            over = stop.check(engine.device)
            if not over and state.step_in_epoch < steps_per_epoch:
                save_mid_epoch()
            if over:
                break
    bar.close()
    return seen, over


def _note_skips(batch: dict, skips: dict) -> None:
    """Record the images the dataset could not decode (``skip`` reasons in the batch)."""
    for file, reason in zip(batch.get("file", ()), batch.get("skip", ())):
        if reason:
            skips.setdefault(file, reason)


class ValidationStopped(Exception):
    """A stop signal arrived during a single-process validation (``validate``'s ``stop_check``)."""


def validate(engine: Engine, loader, dist: Dist, n_images: int, skips: dict, show: bool = False,
             model: torch.nn.Module | None = None, stop_check=None) -> dict:
    """Predictions of every validation image in original pixels, ``(n_images, K, 2)`` (NaN rows for
    images that could not be decoded), and the mean validation loss. Each rank predicts its own
    shard (no padding: each image counts once) with the bare model (or ``model``, e.g. the EMA
    average); rank results are gathered. ``stop_check()`` (single process only: ranks would have
    to agree) is asked before each batch; True raises :class:`ValidationStopped`."""
    from tqdm.auto import tqdm
    model = engine.model if model is None else model
    model.eval()
    if dist.on:  # rank 0's BatchNorm statistics everywhere: every shard sees the model rank 0 saves
        for buf in model.buffers():
            torch.distributed.broadcast(buf, src=0)
    index, preds, loss_sum, count = [], [], 0.0, 0
    with torch.no_grad():
        for batch in tqdm(loader, desc="validation", disable=not show, leave=False, dynamic_ncols=True, unit="batch"):
            if stop_check is not None and stop_check():
                raise ValidationStopped
            out = engine.forward(model, batch["image"])
            ok = ~_skipped_mask(batch)
            if ok.any():
                loss_sum += float(engine.batch_loss(out[ok], _rows(batch, ok))) * int(ok.sum())
                count += int(ok.sum())
            px = engine.landmark_head.decode(out)[0].cpu().numpy().astype(np.float64)
            px[~ok.numpy()] = np.nan
            preds.append(train_data.invert_batch(batch["matrix"].numpy(), px))
            index.append(batch["index"].numpy())
            _note_skips(batch, skips)
    k = engine.n_points
    parts = dist.gather((np.concatenate(index) if index else np.zeros(0, int),
                         np.concatenate(preds) if preds else np.zeros((0, k, 2)), loss_sum, count))
    full = np.full((n_images, k, 2), np.nan)
    for idx, pred, _, _ in parts:
        full[idx] = pred
    return {"pred": full, "loss": sum(p[2] for p in parts) / max(1, sum(p[3] for p in parts))}


def _skipped_mask(batch: dict) -> torch.Tensor:
    return torch.tensor([bool(r) for r in batch.get("skip", [""] * len(batch["index"]))], dtype=torch.bool)


def _rows(batch: dict, ok: torch.Tensor) -> dict:
    return {"target": batch["target"][ok], "mask": batch["mask"][ok]}
