"""The run's checkpoints as a hook: ``last.pt`` during an epoch (``--checkpoint-steps N``,
``--checkpoint-minutes M``) and, at each epoch's end, ``best.pt`` (when the epoch is the best)
before ``last.pt``, ``log.csv`` / ``log.jsonl`` and ``curves.png``. Rank 0 writes; every write is
atomic (:class:`augkit.run_folder.RunFolder`). A stop signal's ``last.pt`` is the trainer's own
(:func:`augkit.train.loop.Trainer.checkpoint`): it must be written whatever the hooks are."""

from __future__ import annotations

import time

from .hooks import Hook

__all__ = ["Checkpoints"]


class Checkpoints(Hook):
    """Always on (the first hook of every run)."""

    def __init__(self) -> None:
        self.last = time.time()

    def epoch_start(self, t, epoch: int) -> None:
        self.last = time.time()   # --checkpoint-minutes counts from the epoch's start

    def sync(self, t) -> None:
        step = t.state.step_in_epoch
        due = (t.cfg.checkpoint_steps and step % t.cfg.checkpoint_steps == 0) or \
            time.time() - self.last > t.cfg.checkpoint_minutes * 60
        if due:
            if t.dist.main:
                t.folder.save_last(t.checkpoint())
            self.last = time.time()

    def epoch_end(self, t, row: dict) -> None:
        if t.dist.main:
            t.folder.save_state(t.checkpoint(), t.improved)
            t.folder.write_logs(t.state.history)
            t.folder.plot(t.state.history, t.log)
