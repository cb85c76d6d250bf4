"""``--ema DECAY``: an exponential moving average of the weights, updated after every optimiser
step (``torch.optim.swa_utils.AveragedModel``), validated and saved as the run's model; the
weights being trained are saved beside it, so ``--resume`` continues both exactly."""

from __future__ import annotations

from .hooks import Hook

__all__ = ["EMA"]


class EMA(Hook):
    """Keeps ``t.state.ema``, the average of ``t.state.model`` with decay ``cfg.ema``."""

    def setup(self, t) -> None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
        t.state.ema = AveragedModel(t.state.model, multi_avg_fn=get_ema_multi_avg_fn(t.cfg.ema), use_buffers=True)
        t.state.ema_decay = t.cfg.ema

    def step(self, t, loss: float, lr: float) -> None:
        t.state.ema.update_parameters(t.engine.model)
