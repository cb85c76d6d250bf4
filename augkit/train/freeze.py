"""Frozen warm-up (``augkit train --freeze-epochs N``): for the first N epochs only the regression
head trains; the backbone's parameters get no gradients (``requires_grad`` False, so the optimiser
skips them: no update, no weight decay) and its modules stay in eval mode (BatchNorm statistics
and dropout as they are). The head is the model's :class:`~augkit.models.heads.LandmarkHead` (with
its neck, for the spatial heads)."""

from __future__ import annotations

from torch import nn

from augkit.errors import InputError
from augkit.models.heads import LandmarkHead

from .hooks import Hook

__all__ = ["FreezeBackbone", "head_modules", "set_frozen", "train_mode"]


def head_modules(model: nn.Module) -> list:
    """The landmark head(s) of a model built by :func:`~augkit.models.network.build_model`."""
    heads = [m for m in model.modules() if isinstance(m, LandmarkHead)]
    if not heads:
        raise InputError("--freeze-epochs: the model has no augkit landmark head to train alone")
    return heads


def set_frozen(model: nn.Module, frozen: bool) -> None:
    """Backbone parameters without (``frozen``) or with gradients; the head's always train."""
    head = {id(p) for m in head_modules(model) for p in m.parameters()}
    for p in model.parameters():
        p.requires_grad_(not frozen or id(p) in head)


def train_mode(model: nn.Module, frozen: bool) -> None:
    """Training mode for the whole model, or (``frozen``) for the head alone, the backbone in eval mode."""
    model.train(not frozen)
    if frozen:
        for m in head_modules(model):
            m.train()


class FreezeBackbone(Hook):
    """The backbone frozen for the epochs before ``cfg.freeze_epochs``, trainable after; the trainer
    reads ``t.frozen`` to keep the frozen backbone in eval mode while the head trains."""

    def epoch_start(self, t, epoch: int) -> None:
        t.frozen = epoch < t.cfg.freeze_epochs
        set_frozen(t.state.model, t.frozen)
