"""Masked landmark losses on normalised coordinates: mse, l1, smooth-l1, wing; optional trimming.

A point that left the crop (``visible`` False, or a NaN target) contributes nothing: its error is
masked out and the per-sample mean divides by the number of points that remain (never clamped to
the border). The trimmed variant drops the worst ``trim`` fraction of samples in the batch (label
noise), keeping at least one.
"""

from __future__ import annotations

import math

import torch

from augkit.errors import InputError
from . import LOSSES  # torch-free there, for the command line

__all__ = ["landmark_loss", "LOSSES", "elementwise", "masked_mean", "counted"]


def elementwise(pred: torch.Tensor, target: torch.Tensor, kind: str, beta: float = 0.01,
                wing_w: float = 0.04, wing_eps: float = 0.008) -> torch.Tensor:
    """Per-point loss (summed over x and y) in normalised units. Shape: (N, K, 2) -> (N, K).

    ``beta`` is smooth-l1's switch point; ``wing_w`` / ``wing_eps`` the wing loss' width and
    curvature (Feng et al. 2018), in the same normalised units (0.04 ~ 10 px of a 256 px crop).
    """
    d = pred - target
    if kind == "mse":
        e = d * d
    elif kind == "l1":
        e = d.abs()
    elif kind == "smooth-l1":
        a = d.abs()
        e = torch.where(a < beta, 0.5 * a * a / beta, a - 0.5 * beta)
    elif kind == "wing":
        a = d.abs()
        c = wing_w - wing_w * math.log(1 + wing_w / wing_eps)
        e = torch.where(a < wing_w, wing_w * torch.log1p(a / wing_eps), a - c)
    else:
        raise InputError(f"unknown loss {kind!r}; expected one of {', '.join(LOSSES)}")
    return e.sum(-1)


def landmark_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, kind: str = "mse",
                  trim: float = 0.0, return_per_sample: bool = False, **kw):
    """Masked mean loss.

    Args:
        pred, target: normalised coordinates. Shape: (N, K, 2).
        mask: True where the point counts (inside the crop). Shape: (N, K). NaN targets are masked too.
        kind: "mse", "l1", "smooth-l1" or "wing".
        trim: fraction in [0, 1) of the batch's worst samples to leave out.

    Returns:
        the scalar loss (and, with ``return_per_sample``, the (N,) per-sample losses).
    """
    m = counted(target, mask)
    safe_target = torch.where(m[..., None], target, pred.detach())
    e = elementwise(pred.float(), safe_target.float(), kind, **kw)
    return masked_mean(e, target, mask, trim, return_per_sample)


def masked_mean(e: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, trim: float = 0.0,
                return_per_sample: bool = False):
    """Mean of the per-point losses ``e`` (N, K) over the points that count (``mask`` and a finite
    target (N, K, 2)), per sample, then over the batch; ``trim`` leaves out that fraction of the
    batch's worst samples (at least one is kept). A sample without any counted point adds nothing."""
    if not 0.0 <= trim < 1.0:
        raise InputError(f"trim must be a fraction in [0, 1), got {trim}")
    m = counted(target, mask)
    e = torch.where(m, e, torch.zeros_like(e))
    count = m.sum(-1)
    per_sample = e.sum(-1) / count.clamp(min=1)
    valid = count > 0
    if trim > 0 and valid.sum() > 1:
        n_valid = int(valid.sum())
        keep = max(1, n_valid - int(math.floor(trim * n_valid)))
        scores = torch.where(valid, per_sample.detach(), torch.full_like(per_sample, float("inf")))
        kept = torch.zeros_like(valid)
        kept[torch.argsort(scores)[:keep]] = True
        valid = valid & kept
    loss = (per_sample * valid).sum() / valid.sum() if valid.any() else (e * 0).sum()
    return (loss, per_sample) if return_per_sample else loss


def counted(target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(N, K) True where a point counts in the loss: finite target, and ``mask`` where given."""
    finite = torch.isfinite(target).all(-1)
    return finite if mask is None else (mask.bool() & finite)
