"""The torch side of the run folder: checkpoints written and read with the paths and the best/last
rule of :class:`augkit.data.run_folder.RunFolder` (which knows every file of a run, writes the
JSON/text ones atomically, and locks and guards the folder), ``skipped.csv`` and ``curves.png``.

``best.pt`` and ``last.pt`` hold the training state (:mod:`augkit.train.state`). The folder is made
when training takes its lock, after the options were checked; a run that fails before its first
file leaves no folder behind.
"""

from __future__ import annotations

import os
import time

from augkit import metrics
from augkit.files import atomic_open, atomic_write_bytes
from augkit.data.run_folder import (
    LOG_COLUMNS,
    InputsChanged,
    RunExists,
    default_run_dir,
)
from augkit.data.run_folder import RunFolder as _Folder

from .checkpoint import read_checkpoint, save_checkpoint

__all__ = ["LOG_COLUMNS", "RunFolder", "check_inputs", "claim_folder", "default_run_dir", "finish", "plot_curves",
           "record_skips", "start_folder"]


class RunFolder(_Folder):
    """:class:`augkit.data.run_folder.RunFolder` plus the torch side: the checkpoints' bytes, the
    curves and ``skipped.csv`` (rank 0 writes; other ranks never call the writers)."""

    def write_skipped(self, skipped: list, n_points: int | None = None) -> None:
        """``skipped.csv`` (``n_points`` is no longer needed; kept for the callers that pass it)."""
        super().write_skipped(skipped)

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
        except Exception as e:  # noqa: BLE001 - a plot must never kill a run
            log(f"could not draw {self.CURVES_NAME}: {e}")

    def read_checkpoint(self, resume: bool = False) -> dict:
        """The checkpoint of :meth:`checkpoint` (best, else last), or of :meth:`resume_checkpoint`."""
        path = self.resume_checkpoint() if resume else self.checkpoint()
        if path is None:
            raise FileNotFoundError(f"{self.path}: no {self.BEST_NAME} nor {self.LAST_NAME} there")
        return read_checkpoint(path)

# ---------------------------------------------------------------------- the run folder of a training
# (``r`` is the training's ``augkit.train.loop._Run``: its config, data, state, folder and log)

def claim_folder(cfg, dist, resumed: bool, note, replace_unsaved: bool = False) -> RunFolder:
    """The run folder (``--out``, else a new ``runs/...``), refused when a new training would write
    over a run (``replace_unsaved``: over one with a checkpoint), and locked by rank 0 for this
    process (a stale lock taken over is told with ``note(line)``); every rank gets rank 0's
    verdict. The caller releases the lock."""
    cfg.out = os.path.abspath(cfg.out or dist.broadcast(default_run_dir(cfg.data) if dist.main else None))
    folder = RunFolder(cfg.out)

    def claim() -> None:
        folder.acquire_lock(note=note)   # first: no other writer can finish a run in between
        if not resumed and not cfg.lr_find:
            try:
                if not (replace_unsaved and folder.resume_checkpoint() is None):
                    folder.refuse_existing()
            except RunExists:
                folder.release_lock()
                raise
    dist.from_main(claim)
    return folder


def check_inputs(r) -> None:
    """On resume: refuse when the labels or the image list changed since the run started."""
    changes = r.folder.input_changes(r.data.fingerprint)
    if changes is None:
        r.log(f"note: {r.folder.path} recorded no input fingerprint (an older run): the inputs are not checked; "
              f"recording the current ones in {r.folder.FINGERPRINT_NAME}")
    elif changes:
        data = f" --data {r.cfg.data}" if r.cfg.data else ""
        raise InputsChanged(f"--resume {r.folder.path}: {'; '.join(changes)} since the run started; --resume "
                            "continues a run on the data it started with. To train on the new data from its "
                            f"weights, start a new run: augkit train --weights {r.folder.last_pt}{data} "
                            "--out NEW_FOLDER")


def start_folder(r, ck: dict | None) -> None:
    """Restore the state on resume (after checking its inputs), write config/split/skipped and the
    input fingerprint, and say what the run is."""
    if ck is not None:
        check_inputs(r)
        note = r.state.restore(ck, r.dist.world)
        if note:
            r.log(note)
        r.elapsed_before = r.state.history[-1]["elapsed_s"] if r.state.history else 0.0
        if r.dist.main and r.folder.repair_best(ck):
            r.log(f"wrote the missing {r.folder.best_pt} from {r.folder.LAST_NAME} (its best epoch)")
        r.log(f"resumed {r.folder.path} at epoch {r.state.epoch + 1}, step {r.state.step_in_epoch} of "
              f"{r.steps_per_epoch}")
    if not r.dist.main:
        return
    if r.cfg.tensorboard:
        from .tb import TBLogger
        r.tb = TBLogger(r.folder.path, r.state.global_step if ck is not None else None)
        if ck is None:
            r.train_sampler.set_epoch(0, 0)
            r.tb.samples(r.train_ds, [i for _, i in r.train_sampler], r.scheme)
    r.folder.write_json(r.folder.CONFIG_NAME, r.cfg.to_dict())
    r.folder.write_json(r.folder.SPLIT_NAME, r.data.split)
    if r.data.fingerprint is not None and (ck is None or r.folder.read_fingerprint() is None):
        r.folder.write_fingerprint(r.data.fingerprint)
    if r.cfg.data is not None:
        r.folder.write_skipped(r.data.skipped, r.data.n_points)
        if r.data.skipped:
            first = r.data.skipped[0]
            r.log(f"skipped {len(r.data.skipped)} rows: see {r.folder.skipped_csv} "
                  f"(first: {first['file']} {first['row'] or ''}: {first['reason']})")
    if not r.cfg.quiet:
        model, e = r.state.model, r.engine
        r.log(f"model {r.cfg.backbone} at {r.cfg.size}x{r.cfg.size} ({r.cfg.preprocess}), "
              f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, on {e.device}"
              f"{' x' + str(r.dist.world) + ' processes' if r.dist.on else ''}"
              f"{', AMP ' + str(e.amp_dtype).split('.')[-1] if e.amp_dtype else ''}; run folder {r.folder.path}")
        if len(r.data.val):
            b = metrics.summary(r.base_pred, r.data.val.points, r.scheme)
            r.log(f"mean-shape baseline on validation: MSE {b['mse']:.2f}  NME {b['nme']:.4f}  FR@0.08 {b['fr']:.1%}")


def record_skips(r) -> None:
    """Images that failed to decode while training: counted, appended to skipped.csv (rank 0)."""
    found = {}
    for part in r.dist.gather(r.skips):
        found.update(part)
    known = {s["file"] for s in r.data.skipped}
    new = [{"file": f, "row": None, "reason": why} for f, why in sorted(found.items()) if f not in known]
    if new:
        r.data.skipped.extend(new)
        r.log(f"{len(new)} image(s) could not be decoded and were skipped (first: {new[0]['file']}: "
              f"{new[0]['reason']}); see {r.folder.SKIPPED_NAME}")
        if r.dist.main:
            r.folder.write_skipped(r.data.skipped, r.data.n_points)


def finish(r, stopped: str | None, stop) -> dict:
    """``summary.json``, the closing line, and a WARNING when the last validated epoch is worse than
    the mean-shape baseline."""
    history = r.state.history
    elapsed = r.elapsed_before + time.time() - stop.session_start
    summary = {"run_dir": r.folder.path, "epochs": len(history), "best": r.state.best,
               "last": history[-1] if history else None, "stopped": stopped, "skipped": len(r.data.skipped),
               "elapsed_s": elapsed, "session_s": time.time() - stop.session_start,
               "train_images": len(r.data.train), "val_images": len(r.data.val)}
    if not r.dist.main:
        return summary
    r.folder.write_json(r.folder.SUMMARY_NAME, summary)
    scored = [h for h in history if "nme" in h]
    if scored:
        bm = min(scored, key=lambda h: h["nme"])
        r.log.always(f"done: {len(history)} epochs in {elapsed:.0f}s; best epoch {bm['epoch']}: val MSE "
                     f"{bm['mse']:.2f} vs mean shape {bm['base_mse']:.2f}, NME {bm['nme']:.4f} vs "
                     f"{bm['base_nme']:.4f}; {len(r.data.skipped)} rows skipped; {r.folder.path}")
    else:
        r.log.always(f"done: {len(history)} epochs in {elapsed:.0f}s; {r.folder.path}")
    if scored and scored[-1]["mse"] > scored[-1]["base_mse"]:
        last = scored[-1]
        r.log.always(f"WARNING: the model is worse than the mean-shape baseline at the end of training: val MSE "
                     f"{last['mse']:.2f} vs mean shape {last['base_mse']:.2f} (epoch {last['epoch']}); train longer, "
                     "lower --lr, or check the labels and --scheme")
    return summary


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
    losses = [h[k] for h in history for k in ("train_loss", "val_loss") if h.get(k) is not None]
    if losses and min(losses) > 0:   # a likelihood loss (the rle head's) can be negative: linear axis then
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
