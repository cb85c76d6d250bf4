"""The run folder: everything a training run leaves behind, and what TTA and prediction read back.

Files: ``config.json`` (the options), ``split.json`` (which images trained and which validated, and
how they were chosen), ``skipped.csv``, ``log.csv`` / ``log.jsonl`` (one row per epoch),
``curves.png``, ``best.pt`` and ``last.pt`` (the training state, :mod:`augkit.train.state`),
``summary.json``. Every file is written atomically; the folder itself is made only when the first
file is written, after the inputs were checked.
"""

from __future__ import annotations

import json
import os
import time

from augkit.config import atomic_open, atomic_write_bytes, atomic_write_text

from .checkpoint import read_checkpoint, save_checkpoint

__all__ = ["RunFolder", "default_run_dir", "LOG_COLUMNS", "plot_curves"]

LOG_COLUMNS = ["epoch", "train_loss", "val_loss", "mse", "nme", "fr", "base_mse", "base_nme", "base_fr", "lr",
               "train_img_s", "epoch_s", "elapsed_s"]


def default_run_dir(data: str | None) -> str:
    """``runs/<time>-<data folder name>`` (``demo`` for the synthetic faces), not yet existing."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = "demo" if data is None else os.path.basename(os.path.normpath(data)) or "data"
    base = os.path.join("runs", f"{stamp}-{name}")
    path, i = base, 1
    while os.path.exists(path):
        i += 1
        path = f"{base}-{i}"
    return path


class RunFolder:
    """Paths and writers of one run folder (rank 0 writes; other ranks never call the writers)."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def _write_text(self, name: str, text: str) -> None:
        atomic_write_text(self.file(name), text)   # creates the folder on the first write

    def write_json(self, name: str, obj) -> None:
        self._write_text(name, json.dumps(obj, indent=1) + "\n")

    def write_skipped(self, skipped: list, n_points: int) -> None:
        import numpy as np
        from .readers import LandmarkTable
        LandmarkTable([], np.zeros((0, n_points, 2)), skipped).write_skipped(self.file("skipped.csv"))

    def write_logs(self, history: list) -> None:
        lines = [",".join(LOG_COLUMNS)]
        for h in history:
            lines.append(",".join("" if h.get(c) is None else (f"{h[c]:.6g}" if isinstance(h[c], float) else str(h[c]))
                                  for c in LOG_COLUMNS))
        self._write_text("log.csv", "\n".join(lines) + "\n")
        self._write_text("log.jsonl", "".join(json.dumps(h) + "\n" for h in history))

    def save_state(self, checkpoint: dict, improved: bool) -> None:
        """``best.pt`` (when ``improved``) BEFORE ``last.pt``: a crash between the two leaves a
        ``last.pt`` of the epoch before, which ``--resume`` redoes, writing both again."""
        if improved:
            save_checkpoint(self.file("best.pt"), checkpoint)
        save_checkpoint(self.file("last.pt"), checkpoint)

    def save_last(self, checkpoint: dict) -> None:
        save_checkpoint(self.file("last.pt"), checkpoint)

    def repair_best(self, checkpoint: dict) -> bool:
        """Write a missing ``best.pt`` when ``last.pt`` (``checkpoint``) is itself the best epoch's
        state (an older run's crash between the two writes). True when it wrote one."""
        best = checkpoint.get("best")
        if os.path.isfile(self.file("best.pt")) or not best:
            return False
        if checkpoint.get("step_in_epoch", 0) or best.get("epoch") != checkpoint.get("epoch"):
            return False
        with open(self.file("last.pt"), "rb") as f:
            atomic_write_bytes(self.file("best.pt"), f.read())
        return True

    def plot(self, history: list, log) -> None:
        try:
            plot_curves(self.path, history)
        except Exception as e:  # a plot must never kill a run
            log(f"could not draw curves.png: {e}")

    def checkpoint(self, name: str = "best.pt") -> dict:
        return read_checkpoint(self.file(name))


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
    path = os.path.join(run_dir, "curves.png")
    try:
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=80)
    finally:
        plt.close(fig)
    return path
