"""The learning-rate schedule of ``augkit train``: warm-up, cosine (with restarts), one-cycle,
reduce-on-plateau or constant, as a plain resumable object. With a frozen warm-up
(``--freeze-epochs``) the head-only epochs run at the peak LR after the linear warm-up, and the
whole schedule (its warm-up included) starts again when the backbone joins, over the epochs left."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["LRSchedule"]


class LRSchedule:
    """Learning rate per optimiser step: linear warm-up times cosine with warm restarts, one-cycle,
    reduce-on-plateau or constant. A plain object with a state dict (resumable)."""

    def __init__(self, kind: str, base_lr: float, steps_per_epoch: int, epochs: int, warmup_epochs: float = 0.0,
                 restart_epochs: float | None = None, factor: float = 0.5, patience: int = 2,
                 min_ratio: float = 1e-3, frozen_epochs: int = 0):
        self.kind, self.base_lr = kind, float(base_lr)
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.frozen = max(0, int(frozen_epochs)) * self.steps_per_epoch   # steps of the head-only phase
        self.epochs = max(1, int(epochs) - max(0, int(frozen_epochs)))   # epochs of the main schedule
        self.warmup = max(0, int(round(warmup_epochs * self.steps_per_epoch)))
        # cosine period in steps: the restart period, or the whole run after warm-up
        self.period = max(1, int(round(restart_epochs * self.steps_per_epoch)) if restart_epochs
                          else self.steps_per_epoch * self.epochs - self.warmup)
        self.factor, self.patience, self.min_ratio = factor, patience, min_ratio
        self.scale, self.best, self.bad = 1.0, math.inf, 0
        self.restarts = bool(restart_epochs)

    def lr(self, step: int) -> float:
        if step < self.frozen:  # head only: warm up, then the peak LR
            return self.base_lr * (min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0)
        step -= self.frozen
        total = self.steps_per_epoch * self.epochs
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

    def epoch_end(self, metric: float) -> None:
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
