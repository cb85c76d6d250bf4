"""Landmark heads: the part of a model that turns backbone features into points (and σ).

A head is one ``nn.Module`` chosen by name (:data:`HEADS`, ``augkit train --head NAME``). It
builds its layers on the backbone's features, encodes targets, computes its loss and decodes its
raw output to ``(N, K, 2)`` points in the input frame plus a per-landmark uncertainty σ (pixels
of the input frame, one isotropic value per landmark: the mean of the two axes' standard
deviations), or ``None`` for a head without one. Every raw output is a float32 ``(N, D)`` tensor,
so DDP, EMA, autocast and the TTA predictor see one kind of model whatever the head.

The coordinate convention lives here, once: a point ``(x, y)`` of an ``H x W`` input (OpenCV
pixel centres, the top-left pixel's centre is ``(0, 0)``) is ``u = (x + 0.5) / W``,
``v = (y + 0.5) / H`` (:func:`to_unit`, :func:`from_unit`): the crop's edges are 0 and 1.

Heads (``pooled``: on the globally pooled feature vector, replacing the classifier; ``spatial``:
on the last feature map, stride 32 for ResNets):

- ``regression`` (pooled): ``2K`` coordinates, a coordinate loss (``--loss``). No σ. Its
  parameters keep the classifier's name (``fc.weight`` for a ResNet), so checkpoints of older
  augkit releases, which record no head, load as this head.
- ``rle`` (pooled): ``2K`` coordinates and ``2K`` log standard deviations, trained by the negative
  log-likelihood of the residual under a Laplace or Gaussian density (``--rle-dist``): the simple
  form of residual log-likelihood estimation (Li et al., ICCV 2021) without its learned flow.
- ``integral`` (spatial): a light neck (1x1 conv, transposed convs up to ``--heatmap-stride``),
  one heatmap per landmark, soft-argmax to coordinates (Sun et al., "Integral human pose
  regression", 2018) trained with ``--loss`` on them; σ from each heatmap's spread. The cells'
  coordinates run from one edge of the crop to the other (cell ``j`` of ``w`` is at ``u = j / (w - 1)``,
  within half a cell of its centre), so the support is the crop: a point outside it (a point the
  loss leaves out in training) decodes to the nearest edge.
- ``simcc`` (spatial): per landmark a 1-D distribution over ``--simcc-ratio`` bins per input pixel
  for each axis (Li et al., "SimCC", ECCV 2022), trained by cross-entropy against a Gaussian label
  of ``--simcc-sigma`` input pixels; bins reach ``SIMCC_MARGIN`` of the crop beyond each edge.
  Decoded by the argmax refined by a parabola through the log-probabilities of its neighbours
  (exact for a Gaussian); σ from each axis' distribution, less the label's own width.

Cost at K = 971 does not scale with ``K x H x W`` at full resolution: the integral head works at
stride 8 (16 x 16 cells at 128 px), SimCC needs ``K x (bins_x + bins_y)`` numbers per image.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from augkit.errors import InputError
from .losses import counted, masked_mean

__all__ = ["HEADS", "LandmarkHead", "RegressionHead", "RLEHead", "IntegralHead", "SimCCHead", "FP32Linear",
           "build_head", "find_head", "head_info", "to_unit", "from_unit", "masked_mean", "SIMCC_MARGIN"]

SIMCC_MARGIN = 0.25   # SimCC bins reach this fraction of the crop beyond each edge


def to_unit(points: torch.Tensor, size_hw) -> torch.Tensor:
    """Input-frame pixels -> unit coordinates ``((x + 0.5) / W, (y + 0.5) / H)``. Shape: (..., 2)."""
    h, w = size_hw
    return (points + 0.5) / points.new_tensor([float(w), float(h)])


def from_unit(u: torch.Tensor, size_hw) -> torch.Tensor:
    """Unit coordinates -> input-frame pixels (the inverse of :func:`to_unit`). Shape: (..., 2)."""
    h, w = size_hw
    return u * u.new_tensor([float(w), float(h)]) - 0.5


def _safe(target: torch.Tensor, m: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """``target`` with the points that do not count replaced by ``fill`` (no NaN reaches a gradient)."""
    return torch.where(m[..., None], target, fill.detach())


class LandmarkHead:
    """What every head has (a mixin beside ``nn.Module``): ``name``, ``has_sigma``, ``spatial``,
    ``settings`` (the options it was built with, recorded in the checkpoint), ``n_points``,
    ``input_size`` (h, w), and :meth:`loss`, :meth:`decode`, :meth:`encode`, :meth:`init_mean_shape`."""

    name = "?"
    has_sigma = False
    spatial = False
    settings: dict
    n_points: int
    input_size: tuple

    def loss(self, out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, trim: float = 0.0):
        """Scalar training loss of raw output ``out`` (N, D) against unit-coordinate targets (N, K, 2)."""
        raise NotImplementedError

    def decode(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw output (N, D) -> (points (N, K, 2) input-frame pixels, σ (N, K) pixels or None)."""
        raise NotImplementedError

    def encode(self, points: torch.Tensor, sigma: float | torch.Tensor = 2.0) -> torch.Tensor:
        """Input-frame points (N, K, 2) (and a σ in pixels, where the head has one) -> a raw output
        (N, D) that :meth:`decode` maps back to them: the head's target encoding."""
        raise NotImplementedError

    def init_mean_shape(self, mean_unit) -> None:
        """Start near the mean shape ``(K, 2)`` (unit coordinates) where the head can; else nothing."""


def _unit_loss(kind: str, pred_unit: torch.Tensor, target: torch.Tensor, mask, trim: float):
    from .losses import elementwise
    m = counted(target, mask)
    e = elementwise(pred_unit.float(), _safe(target, m, pred_unit).float(), kind)
    return masked_mean(e, target, mask, trim)


class FP32Linear(nn.Linear):
    """A linear layer computed in float32 even under autocast: in bf16 the unit coordinates would
    be rounded to about 2**-8 of the crop (most of a pixel at 224 px)."""

    def forward(self, x):
        with torch.autocast(device_type=x.device.type, enabled=False):
            return super().forward(x.float())


class RegressionHead(FP32Linear, LandmarkHead):
    """``2K`` unit coordinates, interleaved ``x0, y0, x1, ...``, from the pooled features."""

    name = "regression"

    def __init__(self, in_features: int, n_points: int, input_size, loss: str = "smooth-l1"):
        super().__init__(in_features, 2 * n_points)
        self.n_points, self.input_size, self.kind = int(n_points), tuple(input_size), loss
        self.settings = {"loss": loss}

    def loss(self, out, target, mask, trim=0.0):
        return _unit_loss(self.kind, out.view(out.shape[0], self.n_points, 2), target, mask, trim)

    def decode(self, out):
        return from_unit(out.reshape(out.shape[0], -1, 2), self.input_size), None

    def encode(self, points, sigma=2.0):
        return to_unit(points, self.input_size).reshape(points.shape[0], -1)

    def init_mean_shape(self, mean_unit) -> None:
        with torch.no_grad():
            self.weight.mul_(0.01)
            self.bias.copy_(torch.as_tensor(mean_unit, dtype=self.bias.dtype).reshape(-1))


LOG_SIGMA_RANGE = (-12.0, 2.0)   # unit-coordinate log σ is clamped here (σ from 6e-6 to 7 crops)


class RLEHead(FP32Linear, LandmarkHead):
    """``2K`` unit coordinates then ``2K`` log standard deviations (per axis), from the pooled
    features; the loss is the residual's negative log-likelihood under ``dist`` (``laplace`` or
    ``gaussian``), both parametrised by their standard deviation so σ means the same in both."""

    name = "rle"
    has_sigma = True

    def __init__(self, in_features: int, n_points: int, input_size, dist: str = "gaussian"):
        if dist not in ("laplace", "gaussian"):
            raise InputError(f"--rle-dist must be laplace or gaussian, got {dist!r}")
        super().__init__(in_features, 4 * n_points)
        self.n_points, self.input_size, self.dist = int(n_points), tuple(input_size), dist
        self.settings = {"rle_dist": dist}

    def _split(self, out):
        k = self.n_points
        mu = out[:, : 2 * k].reshape(-1, k, 2)
        log_s = out[:, 2 * k:].reshape(-1, k, 2).clamp(*LOG_SIGMA_RANGE)
        return mu, log_s

    def loss(self, out, target, mask, trim=0.0):
        mu, log_s = self._split(out.float())
        m = counted(target, mask)
        d = (mu - _safe(target, m, mu)).abs()
        if self.dist == "laplace":   # scale b = σ / sqrt(2): -log p = log(2b) + |d| / b
            e = log_s + math.log(math.sqrt(2.0)) + math.sqrt(2.0) * d * torch.exp(-log_s)
        else:                        # -log p = log σ + d² / (2σ²) + log sqrt(2π)
            e = log_s + 0.5 * (d * torch.exp(-log_s)) ** 2 + 0.5 * math.log(2 * math.pi)
        return masked_mean(e.sum(-1), target, mask, trim)

    def decode(self, out):
        mu, log_s = self._split(out.float())
        s = torch.exp(log_s) * out.new_tensor([float(self.input_size[1]), float(self.input_size[0])])
        return from_unit(mu, self.input_size), s.mean(-1)

    def encode(self, points, sigma=2.0):
        mu = to_unit(points, self.input_size)
        s = torch.as_tensor(sigma, dtype=points.dtype).expand(points.shape[:-1])[..., None]
        s = s / points.new_tensor([float(self.input_size[1]), float(self.input_size[0])])
        return torch.cat([mu.reshape(points.shape[0], -1), torch.log(s).reshape(points.shape[0], -1)], 1)

    def init_mean_shape(self, mean_unit) -> None:
        k = self.n_points
        with torch.no_grad():
            self.weight.mul_(0.01)
            self.bias[: 2 * k].copy_(torch.as_tensor(mean_unit, dtype=self.bias.dtype).reshape(-1))
            self.bias[2 * k:].fill_(math.log(0.05))   # 5% of the crop to start


def _conv_bn(c_in: int, c_out: int, transpose: bool = False) -> list:
    conv = nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False) if transpose else nn.Conv2d(c_in, c_out, 1, bias=False)
    return [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class IntegralHead(nn.Module, LandmarkHead):
    """Heatmaps at ``stride`` with a soft-argmax. ``feature_shape`` is the backbone's (C, h, w) at
    ``input_size``; the neck upsamples it by transposed convolutions (x2 each) to ``stride``."""

    name = "integral"
    has_sigma = True
    spatial = True

    def __init__(self, feature_shape, n_points: int, input_size, stride: int = 8, loss: str = "smooth-l1",
                 width: int = 256):
        super().__init__()
        c, fh, fw = feature_shape
        self.n_points, self.input_size, self.kind = int(n_points), tuple(input_size), loss
        self.settings = {"heatmap_stride": int(stride), "loss": loss}
        feat_stride = input_size[0] / fh
        ups = max(0, round(math.log2(feat_stride / stride)))
        layers = _conv_bn(c, width)
        for _ in range(ups):
            layers += _conv_bn(width, width, transpose=True)
        self.neck = nn.Sequential(*layers)
        self.out = nn.Conv2d(width, self.n_points, 1)
        self.map_hw = (fh * 2 ** ups, fw * 2 ** ups)

    def forward(self, x):
        y = self.out(self.neck(x))
        return y.flatten(1)

    def _grids(self, ref: torch.Tensor):
        mh, mw = self.map_hw
        gx = torch.arange(mw, device=ref.device, dtype=torch.float32) / max(1, mw - 1)
        gy = torch.arange(mh, device=ref.device, dtype=torch.float32) / max(1, mh - 1)
        return gx, gy

    def _marginals(self, out):
        mh, mw = self.map_hw
        p = torch.softmax(out.float().view(out.shape[0], self.n_points, mh * mw), -1).view(-1, self.n_points, mh, mw)
        return p.sum(2), p.sum(3)   # over rows -> x marginal (N, K, mw); over columns -> y (N, K, mh)

    def _moments(self, out):
        px, py = self._marginals(out)
        gx, gy = self._grids(out)
        mx, my = (px * gx).sum(-1), (py * gy).sum(-1)
        vx = (px * (gx - mx[..., None]) ** 2).sum(-1)
        vy = (py * (gy - my[..., None]) ** 2).sum(-1)
        return torch.stack([mx, my], -1), vx, vy

    def loss(self, out, target, mask, trim=0.0):
        mu, _, _ = self._moments(out)
        return _unit_loss(self.kind, mu, target, mask, trim)

    def decode(self, out):
        mu, vx, vy = self._moments(out)
        h, w = self.input_size
        sigma = 0.5 * (vx.clamp(min=0).sqrt() * w + vy.clamp(min=0).sqrt() * h)
        return from_unit(mu, self.input_size), sigma

    def encode(self, points, sigma=2.0):
        """Separable logits ``a_x u + a_y v`` whose soft-argmax is the point (solved per axis by
        bisection on the tilt); a point outside the crop goes to its nearest edge."""
        u = to_unit(points.double(), self.input_size)
        mh, mw = self.map_hw
        gx, gy = (g.double() for g in self._grids(points))
        ax = _tilt_for_mean(gx, u[..., 0])
        ay = _tilt_for_mean(gy, u[..., 1])
        logits = ax[..., None, None] * gx.view(1, 1, 1, mw) + ay[..., None, None] * gy.view(1, 1, mh, 1)
        return logits.reshape(points.shape[0], -1)


def _tilt_for_mean(grid: torch.Tensor, target: torch.Tensor, iters: int = 200) -> torch.Tensor:
    """The ``a`` with ``sum softmax(a g) g = target`` (the mean is increasing in ``a``), by bisection.
    Targets beyond the grid's ends get the end's tilt (a steep one)."""
    lo = torch.full_like(target, -1e4)
    hi = torch.full_like(target, 1e4)
    for _ in range(iters):
        a = 0.5 * (lo + hi)
        m = (torch.softmax(a[..., None] * grid, -1) * grid).sum(-1)
        up = m < target
        lo = torch.where(up, a, lo)
        hi = torch.where(up, hi, a)
    return 0.5 * (lo + hi)


class SimCCHead(nn.Module, LandmarkHead):
    """1-D distributions per axis per landmark. The backbone's (C, h, w) map becomes one h·w map per
    landmark (1x1 conv), a shared MLP turns each into ``bins_x`` and ``bins_y`` logits."""

    name = "simcc"
    has_sigma = True
    spatial = True

    def __init__(self, feature_shape, n_points: int, input_size, ratio: float = 2.0, label_sigma: float = 2.0,
                 width: int = 256):
        super().__init__()
        c, fh, fw = feature_shape
        self.n_points, self.input_size = int(n_points), tuple(input_size)
        self.ratio, self.label_sigma = float(ratio), float(label_sigma)
        self.settings = {"simcc_ratio": self.ratio, "simcc_sigma": self.label_sigma}
        h, w = self.input_size
        self.bins = (int(math.ceil(w * self.ratio * (1 + 2 * SIMCC_MARGIN))),
                     int(math.ceil(h * self.ratio * (1 + 2 * SIMCC_MARGIN))))
        self.to_points = nn.Sequential(nn.Conv2d(c, self.n_points, 1, bias=False), nn.BatchNorm2d(self.n_points))
        self.mlp = nn.Sequential(nn.Linear(fh * fw, width), nn.GELU())
        self.x_out = nn.Linear(width, self.bins[0])
        self.y_out = nn.Linear(width, self.bins[1])

    def forward(self, x):
        z = self.mlp(self.to_points(x).flatten(2))   # (N, K, width)
        return torch.cat([self.x_out(z), self.y_out(z)], -1).flatten(1)

    def _centres(self, axis: int, ref: torch.Tensor, dtype=torch.float32):
        """Bin centres of ``axis`` (0: x, 1: y) in unit coordinates."""
        n = self.bins[axis]
        return -SIMCC_MARGIN + (1 + 2 * SIMCC_MARGIN) * (torch.arange(n, device=ref.device, dtype=dtype) + 0.5) / n

    def _logits(self, out):
        z = out.float().view(out.shape[0], self.n_points, -1)
        return z[..., : self.bins[0]], z[..., self.bins[0]:]

    def _label_sigma_unit(self, axis: int) -> float:
        return self.label_sigma / float(self.input_size[1 - axis])

    def _gauss(self, axis: int, centre: torch.Tensor) -> torch.Tensor:
        """Log of an unnormalised Gaussian label around ``centre`` (unit) over the bins of ``axis``."""
        g = self._centres(axis, centre, centre.dtype)
        return -0.5 * ((g - centre[..., None]) / self._label_sigma_unit(axis)) ** 2

    def loss(self, out, target, mask, trim=0.0):
        m = counted(target, mask)
        t = _safe(target, m, torch.full_like(target, 0.5)).float()
        e = 0
        for axis, logits in enumerate(self._logits(out)):
            label = torch.softmax(self._gauss(axis, t[..., axis]), -1)
            e = e - (label * torch.log_softmax(logits, -1)).sum(-1)
        return masked_mean(e, target, mask, trim)

    def decode(self, out):
        coords, sig = [], []
        for axis, logits in enumerate(self._logits(out)):
            g = self._centres(axis, logits)
            step = float(g[1] - g[0])
            lp = torch.log_softmax(logits, -1)
            b = lp.argmax(-1)
            inner = b.clamp(1, lp.shape[-1] - 2)
            l0, l1, l2 = (lp.gather(-1, (inner + d)[..., None])[..., 0] for d in (-1, 0, 1))
            curv = l0 - 2 * l1 + l2
            delta = torch.where(curv < 0, 0.5 * (l0 - l2) / curv.clamp(max=-1e-12), torch.zeros_like(curv))
            delta = torch.where(b == inner, delta.clamp(-1.0, 1.0), torch.zeros_like(delta))
            coords.append(g[b] + delta * step)
            p = lp.exp()
            var = (p * (g - coords[-1][..., None]) ** 2).sum(-1) - self._label_sigma_unit(axis) ** 2
            sig.append(var.clamp(min=(0.05 * step) ** 2).sqrt() * float(self.input_size[1 - axis]))
        return from_unit(torch.stack(coords, -1), self.input_size), 0.5 * (sig[0] + sig[1])

    def encode(self, points, sigma=2.0):
        u = to_unit(points.float(), self.input_size)
        return torch.cat([self._gauss(0, u[..., 0]), self._gauss(1, u[..., 1])], -1).flatten(1)


HEADS: dict[str, type[LandmarkHead]] = {"regression": RegressionHead, "rle": RLEHead, "integral": IntegralHead,
                                        "simcc": SimCCHead}


def build_head(name: str, features, n_points: int, input_size, settings: dict | None = None):
    """The head ``name`` on ``features`` (an int: pooled feature width; a (C, h, w) tuple: the
    backbone's map at ``input_size``), with its ``settings`` (the option names of
    :data:`augkit.models.HEAD_SETTINGS`; missing ones take their defaults)."""
    from . import HEAD_SETTINGS, head_setting_defaults
    if name not in HEADS:
        raise InputError(f"--head must be one of {', '.join(HEADS)}, got {name!r}")
    s = {**head_setting_defaults(name), **{k: v for k, v in (settings or {}).items() if k in HEAD_SETTINGS[name]}}
    size = tuple(input_size)
    if name == "regression":
        return RegressionHead(features, n_points, size, loss=s["loss"])
    if name == "rle":
        return RLEHead(features, n_points, size, dist=s["rle_dist"])
    if name == "integral":
        return IntegralHead(features, n_points, size, stride=s["heatmap_stride"], loss=s["loss"])
    return SimCCHead(features, n_points, size, ratio=s["simcc_ratio"], label_sigma=s["simcc_sigma"])


class BareRegression(LandmarkHead):
    """The regression convention for a model that has no augkit head (any ``nn.Module`` whose output
    is ``(N, 2K)`` unit coordinates, e.g. a bare :class:`~augkit.models.network.TinyNet`): decodes and
    computes the loss like :class:`RegressionHead`, with no parameters of its own."""

    name = "regression"

    def __init__(self, n_points: int, input_size, loss: str = "smooth-l1"):
        self.n_points, self.input_size, self.kind = int(n_points), tuple(input_size), loss
        self.settings = {"loss": loss}

    loss = RegressionHead.loss
    decode = RegressionHead.decode
    encode = RegressionHead.encode


def find_head(model: nn.Module, n_points: int | None = None, input_size=None, loss: str = "smooth-l1") -> LandmarkHead:
    """The landmark head of a model built by :func:`augkit.models.network.build_model` (also inside a
    DDP or EMA wrapper). A model without one is read as bare regression (:class:`BareRegression`)
    when ``n_points`` and ``input_size`` are given; otherwise that is an error."""
    for m in model.modules():
        if isinstance(m, LandmarkHead):
            return m
    if n_points is not None and input_size is not None:
        return BareRegression(n_points, input_size, loss)
    raise InputError("the model has no augkit landmark head")


def head_info(head: LandmarkHead) -> dict:
    """What a checkpoint records of the head: ``{"name", "settings"}``."""
    return {"name": head.name, "settings": dict(head.settings)}
