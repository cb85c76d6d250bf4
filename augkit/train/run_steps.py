"""The run folder's part in a training run: claim and lock it, check the inputs on ``--resume``,
write the start files, the skips and the summary at the end. The folder itself (every file's name,
the checkpoints, the lock) is :class:`augkit.run_folder.RunFolder`.

The folder is made when training takes its lock, after the options were checked; a run that fails
before its first file leaves no folder behind.
"""

from __future__ import annotations

import time

from augkit import metrics
from augkit.run_folder import InputsChanged, RunExists, RunFolder, default_run_dir

__all__ = ["check_inputs", "claim_folder", "finish", "record_skips", "start_folder"]



# ---------------------------------------------------------------------- the run folder of a training
# (``r`` is the run's :class:`augkit.train.loop.Trainer`: its config, data, state, folder and log)

def claim_folder(cfg, dist, resumed: bool, note, replace_unsaved: bool = False) -> RunFolder:
    """The run folder (``--out``, else a new ``runs/...``, the same on every rank), refused when a
    new training would write over a run (``replace_unsaved``: over one with a checkpoint), and
    locked by rank 0 for this process (a stale lock taken over is told with ``note(line)``); every
    rank gets rank 0's verdict. The caller releases the lock."""
    folder = RunFolder(cfg.out or dist.broadcast(default_run_dir(cfg.data) if dist.main else None))

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
    r.folder.write_json(r.folder.CONFIG_NAME, r.cfg.to_dict())
    r.folder.write_json(r.folder.SPLIT_NAME, r.data.split)
    if r.data.fingerprint is not None and (ck is None or r.folder.read_fingerprint() is None):
        r.folder.write_fingerprint(r.data.fingerprint)
    if r.cfg.data is not None:
        r.folder.write_skipped(r.data.skipped)
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
            r.folder.write_skipped(r.data.skipped)


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
