"""The training state: everything a run needs to continue exactly where it stopped. The
checkpoint file (``last.pt`` / ``best.pt``) is this object saved, plus the run's fixed facts
(pipelines, scheme, config, model info, mean shape) that :func:`load_model` needs for inference.

With ``--ema`` the state also holds the weight average (a ``torch.optim.swa_utils.AveragedModel``):
the checkpoint's ``model`` is then the AVERAGED weights (what validation scored, and what
:func:`load_model`, TTA and ``--weights`` read with no new option), ``train_model`` the weights
being trained and ``ema`` the decay and the number of averaged steps: ``--resume`` continues both."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from augkit.errors import InputError

if TYPE_CHECKING:
    from torch.optim.swa_utils import AveragedModel

    from .schedule import LRSchedule

__all__ = ["TrainState", "rng_state", "set_rng_state"]


def rng_state() -> dict:
    """The torch, python, numpy (and CUDA) random states, as plain data."""
    st = {"torch": torch.get_rng_state(), "python": random.getstate()}
    npst = cast(tuple, np.random.get_state(legacy=True))
    st["numpy"] = [npst[0], npst[1].tolist(), int(npst[2]), int(npst[3]), float(npst[4])]
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    """Restore what :func:`rng_state` captured (CUDA states only where CUDA is present)."""
    torch.set_rng_state(st["torch"])
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in st["python"]))
    n = st["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    if "cuda" in st and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(st["cuda"])
        except RuntimeError:
            pass


@dataclass
class TrainState:
    """Model, optimiser, LR schedule, gradient scaler, position and results of a run.

    ``epoch`` counts completed epochs; ``step_in_epoch`` the steps done in the next one (0 at an
    epoch boundary); ``running_loss`` is (sum of loss x images, images) of that partial epoch.
    ``best`` is ``{"epoch", "score", "metric"}`` of the best epoch so far.
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LRSchedule
    scaler: torch.amp.GradScaler
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    running_loss: list = field(default_factory=lambda: [0.0, 0])
    history: list = field(default_factory=list)
    best: dict | None = None
    ema: AveragedModel | None = None      # the average of ``model`` (--ema: augkit.train.ema), updated every step
    ema_decay: float | None = None

    def eval_model(self) -> torch.nn.Module:
        """The weights that are validated and saved as ``model``: the average with --ema."""
        return self.ema.module if self.ema is not None else self.model

    def to_checkpoint(self, world: int, fixed: dict) -> dict:
        """The checkpoint dict: this state plus the run's ``fixed`` facts."""
        averaged = {}
        if self.ema is not None:
            averaged = {"train_model": self.model.state_dict(),
                        "ema": {"decay": self.ema_decay, "n_averaged": self.ema.n_averaged.detach().clone()}}
        return {
            "model": self.eval_model().state_dict(), **averaged, "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "running_loss": list(self.running_loss), "rng": rng_state(), "world": world,
            "history": list(self.history), "best": self.best, "time": time.time(), **fixed,
        }

    def restore(self, ck: dict, world: int) -> str | None:
        """Load a checkpoint into this state. Returns a note when the interrupted epoch restarts."""
        if self.ema is not None:
            if "ema" not in ck:
                raise InputError("--resume: the run was started without --ema; its checkpoint holds no average")
            self.model.load_state_dict(ck["train_model"])
            self.ema.module.load_state_dict(ck["model"])
            self.ema.n_averaged.copy_(ck["ema"]["n_averaged"])
        elif "ema" in ck:
            raise InputError("--resume: the run was started with --ema; it needs its average")
        else:
            self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        if ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        set_rng_state(ck["rng"])
        self.history, self.best = list(ck.get("history", [])), ck.get("best")
        self.epoch, self.step_in_epoch = ck["epoch"], ck.get("step_in_epoch", 0)
        self.global_step = ck["global_step"]
        self.running_loss = list(ck.get("running_loss", [0.0, 0]))
        if self.step_in_epoch and self.history and self.history[-1]["epoch"] == self.epoch + 1:
            self.history.pop()  # the row of an epoch cut short by --time-budget: it is redone now
        if self.step_in_epoch and ck.get("world", 1) != world:
            self.global_step -= self.step_in_epoch
            self.step_in_epoch, self.running_loss = 0, [0.0, 0]
            return "resuming with a different number of processes: restarting the interrupted epoch"
        return None

    def record_epoch(self, row: dict) -> bool:
        """Append the epoch's row; True when it is the best epoch so far (by NME, else train loss)."""
        self.history.append(row)
        score = row.get("nme", row["train_loss"])
        improved = self.best is None or score < self.best["score"]
        if improved:
            self.best = {"epoch": row["epoch"], "score": score, "metric": "nme" if "nme" in row else "train_loss"}
        return improved
