"""``--early-stop N``: end the run when the validation error (NME; without validation images, the
training loss) has not improved for N epochs. The best epoch is the one the run already records
(``best.pt``, ``state.best``), so a resumed run counts from where it stopped."""

from __future__ import annotations

from .hooks import Hook

__all__ = ["EarlyStop"]


class EarlyStop(Hook):
    """Asks the trainer to stop after an epoch ``cfg.early_stop`` epochs past the best one."""

    def epoch_end(self, t, row: dict) -> None:
        best = t.state.best
        waited = row["epoch"] - best["epoch"]
        if waited >= t.cfg.early_stop:
            t.request_stop(f"early stop: no better {best['metric']} for {waited} epochs (best: epoch "
                           f"{best['epoch']}, {best['score']:.4g})")
