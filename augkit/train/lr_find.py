"""The learning-rate range test behind ``augkit train --lr-find`` and ``--lr auto``.

The learning rate grows exponentially from :data:`START_LR` to :data:`END_LR` over a bounded number
of optimiser steps, on the run's own data, model and options. The training loss, smoothed by a
bias-corrected exponential average (pandas' ``ewm(adjust=True)``), is recorded against the LR
until it diverges (:data:`DIVERGE` times its lowest value, or not finite). The suggested peak LR
is :func:`suggest`'s, by the shape of the curve: where the loss falls into a valley, a tenth of the
LR where it turns up again; where it stays flat and then rises (a head that starts at the mean
shape learns little in a short sweep), the LR where the rise begins divided by
:data:`FLAT_MARGIN`.

Nothing of the sweep is kept: :func:`lr_find` puts the model, the optimiser and the random states
back afterwards and writes no checkpoint, so ``--resume`` never mistakes a sweep for a run. It
leaves ``lr_find.png`` (smoothed loss against LR on a log axis, the suggestion marked) and
``lr_find.json`` (the suggestion and the curve) in the run folder.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np

from augkit.errors import InputError

from .hooks import Hook

__all__ = ["AutoLR", "SweepResult", "sweep", "smooth", "suggest", "plot_sweep", "lr_find", "range_test_only",
           "START_LR", "END_LR", "DIVERGE",
           "DIVISOR", "RISE", "SMOOTH_ALPHA", "VALLEY", "FLAT_RISE", "FLAT_MARGIN"]

START_LR, END_LR = 1e-7, 10.0
DIVERGE = 4.0        # stop once the smoothed loss exceeds this multiple of its lowest value
RISE = 1.05          # the edge: the largest LR whose smoothed loss is within this factor of the lowest
DIVISOR = 10.0       # the suggestion: the edge's LR divided by this
VALLEY = 0.10        # a valley: the lowest smoothed loss at least this fraction below where the sweep began
FLAT_RISE = 0.10     # no valley: the rise begins where the smoothed loss first exceeds its starting level by this
FLAT_MARGIN = 2.0    # ... and the suggestion is that LR divided by this
SMOOTH_ALPHA = 0.05  # weight of the newest loss in the exponential average (about 20 steps)


@dataclass
class SweepResult:
    """One range test: the LRs tried, the raw and smoothed losses, the suggestion and why it stopped."""

    lrs: list
    losses: list
    smoothed: list = field(default_factory=list)
    suggestion: float = float("nan")
    edge_lr: float = float("nan")
    stopped: str = ""
    shape: str = ""    # "valley" or "flat" (see suggest); "" without a suggestion

    def rule(self) -> str:
        """How the suggestion was made, in words."""
        if self.shape == "valley":
            return (f"a valley: the largest LR with the smoothed loss within {RISE - 1:.0%} of its lowest (the edge), "
                    f"/ {DIVISOR:g}")
        if self.shape == "flat":
            return (f"flat, then rising: the first LR with the smoothed loss {FLAT_RISE:.0%} above its starting "
                    f"level (the edge), / {FLAT_MARGIN:g}")
        return "no suggestion: the loss never turned up"

    def to_dict(self) -> dict:
        def num(v):  # JSON has no NaN
            return v if math.isfinite(v) else None
        return {"suggested_lr": num(self.suggestion), "edge_lr": num(self.edge_lr),
                "shape": self.shape or None, "rule": self.rule(),
                "steps": len(self.losses), "stopped": self.stopped, "lr": self.lrs,
                "loss": [num(v) for v in self.losses], "smoothed_loss": [num(v) for v in self.smoothed]}


def smooth(losses, alpha: float = SMOOTH_ALPHA) -> np.ndarray:
    """Bias-corrected exponential average of ``losses`` (the first values are not pulled to 0)."""
    import pandas as pd
    return pd.Series(np.asarray(losses, dtype=np.float64)).ewm(alpha=alpha, adjust=True).mean().to_numpy()


def suggest(lrs, smoothed) -> tuple[float, float, str]:
    """(suggested peak LR, the edge LR, the curve's shape: ``"valley"``, ``"flat"`` or ``""``), by the shape of the smoothed curve after its first tenth
    (where the average is still settling). Its starting level is the median of the first tenth of
    what is left.

    - **A valley** (the lowest value at least :data:`VALLEY` below the starting level): the edge is
      the largest LR at which the loss is still within :data:`RISE` of its lowest, and the
      suggestion the edge / :data:`DIVISOR` (close to the usual "lowest loss / 10" rule).
    - **Flat, then rising** (no valley: a regression head that starts at the mean shape, as on
      ytf68 in ``benchmarks/recipes.py``): the edge is the first LR at which the loss exceeds its
      starting level by :data:`FLAT_RISE`, where the rise begins, and the suggestion the edge /
      :data:`FLAT_MARGIN`. A tenth of it would be far too cautious: the flat part only says that
      small steps change nothing, not that large ones hurt.

    NaN for both (and no shape) when the loss never turned up (or has no finite value after the
    settling part)."""
    lrs, sm = np.asarray(lrs, dtype=np.float64), np.asarray(smoothed, dtype=np.float64)
    skip = min(max(3, len(sm) // 10), max(0, len(sm) - 1))
    tail = np.where(np.isfinite(sm[skip:]), sm[skip:], np.inf)
    if not len(tail) or not np.isfinite(tail).any():
        return float("nan"), float("nan"), ""
    start = float(np.median(tail[:max(3, len(tail) // 10)]))
    low = float(tail.min())
    if low < (1 - VALLEY) * start:
        near = np.flatnonzero(tail <= RISE * low)
        if skip + near[-1] == len(sm) - 1:  # still at its lowest at the end: the loss never turned up
            return float("nan"), float("nan"), ""
        edge = float(lrs[skip + near[-1]])
        return edge / DIVISOR, edge, "valley"
    up = np.flatnonzero(tail > (1 + FLAT_RISE) * start)
    if not len(up):
        return float("nan"), float("nan"), ""
    edge = float(lrs[skip + up[0]])
    return edge / FLAT_MARGIN, edge, "flat"


def sweep(step, steps: int, start: float = START_LR, end: float = END_LR, min_steps: int = 10) -> SweepResult:
    """Run ``step(lr) -> loss`` at ``steps`` exponentially spaced LRs from ``start`` to ``end``,
    stopping early once the smoothed loss diverges (after ``min_steps``)."""
    if steps < 2:
        raise InputError("--lr-find-steps must be at least 2")
    lrs = np.geomspace(start, end, steps)
    res = SweepResult([], [])
    alpha = max(SMOOTH_ALPHA, 4.0 / steps)  # a short sweep: a shorter memory
    best = math.inf
    for i, lr in enumerate(lrs):
        loss = float(step(float(lr)))
        res.lrs.append(float(lr))
        res.losses.append(loss)
        if not math.isfinite(loss):
            res.stopped = f"the loss became {loss} at LR {lr:.3g}"
            break
        current = smooth(res.losses, alpha)[-1]
        best = min(best, current)
        if i >= min_steps and current > DIVERGE * best:
            res.stopped = f"the smoothed loss passed {DIVERGE:g}x its lowest at LR {lr:.3g}"
            break
    res.smoothed = smooth([v if math.isfinite(v) else np.nan for v in res.losses], alpha).tolist()
    if res.losses and not math.isfinite(res.losses[-1]):  # the average skips NaN: the divergence must show
        res.smoothed[-1] = math.inf
    res.suggestion, res.edge_lr, res.shape = suggest(res.lrs, res.smoothed)
    return res


def plot_sweep(path: str, res: SweepResult, title: str = "") -> None:
    """``lr_find.png``: raw and smoothed loss against LR (log axis), the suggestion marked."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from augkit.files import write_figure
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(res.lrs, res.losses, color="0.75", lw=0.8, label="loss per step")
    ax.plot(res.lrs, res.smoothed, color="C0", lw=1.8, label="smoothed loss")
    if math.isfinite(res.suggestion):
        ax.axvline(res.suggestion, color="C3", ls="--", label=f"suggested peak LR {res.suggestion:.2g}")
        ax.axvline(res.edge_lr, color="0.4", ls=":", lw=1, label=f"the loss turns up: {res.edge_lr:.2g}")
    ax.set_xscale("log")
    finite = [v for v in res.smoothed if math.isfinite(v)]
    if finite:  # the divergence would flatten the rest of the curve
        lo, hi = min(finite), finite[0]
        ax.set_ylim(lo - 0.1 * (hi - lo + 1e-12), max(hi, lo) * 1.3 + 1e-12)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(title or "learning-rate range test", fontsize=9)
    ax.legend(fontsize=8)
    write_figure(fig, path, dpi=90)


def lr_find(r, steps: int) -> SweepResult:
    """The range test on a built run ``r`` (:class:`augkit.train.loop.Trainer`): ``steps`` training
    steps over its own loader, then the model, optimiser, sampler position and random states as
    they were. Under DDP the ranks sweep their shards and average each step's loss, so every rank
    stops at the same step and gets the same suggestion. Rank 0 writes lr_find.png / .json."""
    import torch

    from .epoch import optimiser_step
    from .state import rng_state, set_rng_state

    st, engine = r.state, r.engine
    saved = (copy.deepcopy(st.model.state_dict()), copy.deepcopy(st.optimizer.state_dict()), rng_state(),
             copy.deepcopy(st.scaler.state_dict()))
    batches = {"it": None, "epoch": 0}

    def next_batch():
        while True:
            if batches["it"] is None:
                r.train_sampler.set_epoch(batches["epoch"], 0)
                batches["it"] = iter(r.train_loader)
            try:
                return next(batches["it"])
            except StopIteration:  # a small dataset: the sweep goes on into the next epoch
                batches["it"], batches["epoch"] = None, batches["epoch"] + 1

    def step(lr: float) -> float:
        for g in st.optimizer.param_groups:
            g["lr"] = lr
        batch = next_batch()
        loss = engine.batch_loss(engine.forward(engine.net, batch["image"]), batch, engine.trim)
        optimiser_step(engine, st, loss)
        value = torch.tensor([float(loss.detach())], dtype=torch.float64, device=engine.device)
        if r.dist.on:
            torch.distributed.all_reduce(value)
            value /= r.dist.world
        return float(value)

    engine.net.train()
    try:
        res = sweep(step, steps)
    finally:
        batches["it"] = None
        st.model.load_state_dict(saved[0])
        st.optimizer.load_state_dict(saved[1])
        st.scaler.load_state_dict(saved[3])
        set_rng_state(saved[2])
    if r.dist.main:
        plot_sweep(r.folder.lr_find_png, res, f"LR range test: {r.cfg.backbone}, {r.cfg.optimizer}, batch "
                   f"{r.cfg.batch_size}, {len(res.losses)} steps")
        r.folder.write_json(r.folder.LR_FIND_JSON_NAME, res.to_dict())
    return res


def _where(t) -> str:
    return f"{t.folder.file('lr_find.png')} and lr_find.json"


def range_test_only(t) -> dict:
    """``--lr-find``: the range test on the built run ``t`` (a :class:`~augkit.train.loop.Trainer`),
    its one-line result; no training follows."""
    res = lr_find(t, t.cfg.lr_find_steps)
    if math.isfinite(res.suggestion):
        line = (f"lr-find: suggested peak LR {res.suggestion:.3g} (the loss turns up at {res.edge_lr:.3g}; "
                f"{len(res.losses)} steps); wrote {_where(t)}")
    else:
        line = f"lr-find: the loss never turned up in {len(res.losses)} steps: no suggestion; wrote {_where(t)}"
    t.log.always(line)
    return {"run_dir": t.folder.path, "lr_find": res.to_dict()}


class AutoLR(Hook):
    """``--lr auto``: the range test on the built run (undone), then the run trains at its
    suggestion (saved as the run's ``lr``; bit for bit the run ``--lr <suggestion>`` gives)."""

    @staticmethod
    def applies(lr) -> bool:
        """Switched on by ``--lr auto`` (a resumed run has the LR its range test found)."""
        return lr == "auto"

    def setup(self, t) -> None:
        if t.cfg.lr_find:   # --lr-find alone: the range test is the whole run
            return
        res = lr_find(t, t.cfg.lr_find_steps)
        if not math.isfinite(res.suggestion):
            raise InputError(f"--lr auto: the loss never turned up during the {len(res.losses)}-step range test "
                             f"(see {_where(t)}); pass --lr")
        t.set_peak_lr(res.suggestion)
        t.log.always(f"--lr auto: peak LR {res.suggestion:.3g} from a {len(res.losses)}-step range test; "
                     f"wrote {_where(t)}")
