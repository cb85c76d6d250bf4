"""The torch side of the run folder: checkpoints written and read with the paths and the best/last
rule of :class:`augkit.data.run_folder.RunFolder` (which knows every file of a run, writes the
JSON/text ones atomically, and locks and guards the folder), ``skipped.csv`` and ``curves.png``.

``best.pt`` and ``last.pt`` hold the training state (:mod:`augkit.train.state`). The folder is made
when training takes its lock, after the options were checked; a run that fails before its first
file leaves no folder behind.
"""

from __future__ import annotations

import os

from augkit.config import atomic_open, atomic_write_bytes
from augkit.data.run_folder import LOG_COLUMNS, default_run_dir
from augkit.data.run_folder import RunFolder as _Folder

from .checkpoint import read_checkpoint, save_checkpoint

__all__ = ["RunFolder", "default_run_dir", "LOG_COLUMNS", "plot_curves"]


class RunFolder(_Folder):
    """:class:`augkit.data.run_folder.RunFolder` plus the torch side: the checkpoints' bytes, the
    curves and ``skipped.csv`` (rank 0 writes; other ranks never call the writers)."""

    def write_skipped(self, skipped: list, n_points: int) -> None:
        import numpy as np
        from .readers import LandmarkTable
        LandmarkTable([], np.zeros((0, n_points, 2)), skipped).write_skipped(self.skipped_csv)

    def save_state(self, checkpoint: dict, improved: bool) -> None:
        """``best.pt`` (when ``improved``) BEFORE ``last.pt``: a crash between the two leaves a
        ``last.pt`` of the epoch before, which ``--resume`` redoes, writing both again."""
        if improved:
            save_checkpoint(self.best_pt, checkpoint)
        save_checkpoint(self.last_pt, checkpoint)

    def save_last(self, checkpoint: dict) -> None:
        save_checkpoint(self.last_pt, checkpoint)

    def repair_best(self, checkpoint: dict) -> bool:
        """Write a missing ``best.pt`` when ``last.pt`` (``checkpoint``) is itself the best epoch's
        state (an older run's crash between the two writes). True when it wrote one."""
        best = checkpoint.get("best")
        if self.has(self.BEST_NAME) or not best:
            return False
        if checkpoint.get("step_in_epoch", 0) or best.get("epoch") != checkpoint.get("epoch"):
            return False
        with open(self.last_pt, "rb") as f:
            atomic_write_bytes(self.best_pt, f.read())
        return True

    def plot(self, history: list, log) -> None:
        try:
            plot_curves(self.path, history)
        except Exception as e:  # a plot must never kill a run
            log(f"could not draw {self.CURVES_NAME}: {e}")

    def read_checkpoint(self, resume: bool = False) -> dict:
        """The checkpoint of :meth:`checkpoint` (best, else last), or of :meth:`resume_checkpoint`."""
        path = self.resume_checkpoint() if resume else self.checkpoint()
        if path is None:
            raise FileNotFoundError(f"{self.path}: no {self.BEST_NAME} nor {self.LAST_NAME} there")
        return read_checkpoint(path)


def plot_curves(run_dir: str, history: list) -> str | None:
    """``curves.png``: losses, and validation NME against the mean-shape baseline."""
    if not history:
        return None
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    if any(h.get("val_loss") is not None for h in history):
        ax[0].plot(epochs, [h.get("val_loss") for h in history], "o-", label="val loss")
    ax[0].set_yscale("log")
    ax[0].set_xlabel("epoch")
    ax[0].legend()
    if any(h.get("nme") is not None for h in history):
        ax[1].plot(epochs, [h.get("nme") for h in history], "o-", label="val NME")
        ax[1].plot(epochs, [h.get("base_nme") for h in history], "--", label="mean-shape baseline")
        ax[1].set_xlabel("epoch")
        ax[1].set_ylabel("NME")
        ax[1].legend()
    fig.tight_layout()
    path = os.path.join(run_dir, RunFolder.CURVES_NAME)
    try:
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=80)
    finally:
        plt.close(fig)
    return path
