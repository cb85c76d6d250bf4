"""Training features as hooks: the :class:`~augkit.train.loop.Trainer` calls each hook at fixed
points of a run, and a new feature is one :class:`Hook` subclass in one file plus its option.

The points, in the order a run meets them (``t`` is the trainer: its ``cfg``, ``state``,
``engine``, ``folder``, ``dist``, ``log``, ...):

- ``setup(t)``: the run is built (data, model, optimiser, schedule), before a resumed state is
  restored into it: a hook that adds to the state (e.g. the EMA average) does it here;
- ``start(t, resumed)``: the state is restored and the run folder written; the first step is next;
- ``epoch_start(t, epoch)``: before the epoch's (or the resumed epoch's remaining) steps;
- ``step(t, loss, lr)``: after each optimiser step (this process's batch loss, the step's LR);
- ``sync(t)``: a step at which every rank has agreed to go on (every step in one process, every
  few under DDP; not the epoch's last): where a mid-epoch checkpoint is written;
- ``validation(t, pred)``: the epoch's validation predictions, original pixels ``(N, K, 2)``;
- ``epoch_end(t, row)``: the epoch's row is recorded in the history (the first hook,
  :class:`~augkit.train.checkpoints.Checkpoints`, saves it with the state); a hook may end the
  run here with :meth:`~augkit.train.loop.Trainer.request_stop`;
- ``close(t)``: the run ends (finished, stopped, or failed): release what the hook holds.

Every rank calls every hook; a hook that writes files does so on rank 0 (``t.dist.main``). A
hook's decisions must be the same on every rank (they see the same reduced rows).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from .loop import Trainer

__all__ = ["Hook"]


class Hook:
    """A training feature; override the points it needs (each default does nothing)."""

    def setup(self, t: Trainer) -> None:
        """The run is built; a resumed state is restored after this."""

    def start(self, t: Trainer, resumed: bool) -> None:
        """The state is restored (``resumed``) or new, the run folder written; training starts."""

    def epoch_start(self, t: Trainer, epoch: int) -> None:
        """Epoch ``epoch`` (0-based) starts or continues."""

    def step(self, t: Trainer, loss: float, lr: float) -> None:
        """One optimiser step was taken (``t.state.global_step`` is its index)."""

    def sync(self, t: Trainer) -> None:
        """Every rank is at this step and goes on (a mid-epoch checkpoint may be written)."""

    def validation(self, t: Trainer, pred: np.ndarray) -> None:
        """The epoch's validation predictions in original pixels (NaN rows: undecodable images)."""

    def epoch_end(self, t: Trainer, row: dict) -> None:
        """The epoch's row (``log.csv``'s columns) is recorded (and saved, by the first hook)."""

    def close(self, t: Trainer) -> None:
        """The run ends, however it ends."""
