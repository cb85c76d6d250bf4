"""Landmark models: any torchvision (or timm) classification backbone with a landmark head.

The head (:mod:`augkit.models.heads`, chosen by name) either replaces the classifier on the pooled
features (``regression``, ``rle``: the parameters keep the classifier's name) or sits on the
backbone's last feature map (``integral``, ``simcc``: a :class:`LandmarkNet` of a :class:`Trunk`
and the head). The model's output is the head's raw ``(N, D)`` tensor; the head decodes it. For the
regression head that is ``(N, 2K)`` unit coordinates, interleaved ``x0, y0, x1, y1, ...``
(:func:`decode` and :func:`encode` convert; the convention is :func:`augkit.models.heads.to_unit`'s).

``backbone="tiny"`` is a small plain CNN (not torchvision) for tests and quick experiments;
``backbone="timm/NAME"`` is any classification model of timm (the ``[timm]`` extra), built through
``timm.create_model`` with its own head sized to ``2K``.
"""

from __future__ import annotations

import torch
from torch import nn

from augkit.errors import AugkitError, InputError
from .heads import FP32Linear  # noqa: F401 - kept importable here
from .heads import from_unit, to_unit
from .model_input import (  # the one definition; kept importable here
    IMAGENET_MEAN,
    IMAGENET_STD,
)

__all__ = ["build_model", "decode", "encode", "TinyNet", "PretrainedUnavailable", "IMAGENET_MEAN", "IMAGENET_STD",
           "list_backbones", "LandmarkNet", "Trunk"]


class PretrainedUnavailable(AugkitError, RuntimeError):
    """ImageNet weights could not be downloaded (offline?)."""


class TinyNet(nn.Module):
    """A 4-stage plain CNN (conv-BN-ReLU, stride 2) with global pooling and a linear head: a test
    and demo model, not a torchvision backbone."""

    def __init__(self, n_outputs: int, width: int = 16):
        super().__init__()
        layers, c = [], 3
        for i in range(4):
            o = width * 2 ** i
            layers += [nn.Conv2d(c, o, 3, 2, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
                       nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]
            c = o
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, n_outputs)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


TIMM_PREFIX = "timm/"


def _timm_model(name: str, out: int, pretrained: bool) -> nn.Module:
    """``timm.create_model(name, num_classes=out)``; ImageNet weights through timm's own hub API
    when ``pretrained`` (:class:`PretrainedUnavailable` when they cannot be fetched)."""
    from augkit.extras import require_extra
    require_extra("timm", f"--backbone {TIMM_PREFIX}{name}")
    import timm
    if not name or not timm.is_model(name):
        close = timm.list_models(f"*{name[:5]}*")[:8] if name else []
        raise InputError(f"--backbone {TIMM_PREFIX}{name}: timm has no model {name!r} (e.g. "
                         f"{', '.join(close or ['resnet18', 'resnet50', 'efficientnet_b0', 'convnext_nano'])})")
    if pretrained:
        if not timm.models.is_model_pretrained(name):
            raise InputError(f"--pretrained: timm has no pretrained weights for {name!r}")
        try:
            return timm.create_model(name, pretrained=True, num_classes=out)
        except Exception as e:  # huggingface_hub / URL / socket errors when offline
            raise PretrainedUnavailable(
                f"--pretrained: timm could not fetch the ImageNet weights of {name} ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:200] if str(e) else ''}). Are you offline? Download them elsewhere and "
                f"pass --weights FILE.") from None
    return timm.create_model(name, pretrained=False, num_classes=out)


def _timm_head(model: nn.Module):
    """(parent, attribute, Linear) of a timm model's classifier (``get_classifier``)."""
    get_classifier = getattr(model, "get_classifier", None)
    head = get_classifier() if get_classifier is not None else None
    for name, mod in model.named_modules():
        if mod is head and isinstance(mod, nn.Linear):
            parent_name, _, attr = name.rpartition(".")
            return (model.get_submodule(parent_name) if parent_name else model), attr, mod
    return None


def list_backbones() -> list:
    import torchvision
    return ["tiny"] + sorted(torchvision.models.list_models(module=torchvision.models))


def _last_linear(model: nn.Module):
    """(parent module, attribute name, the Linear) of the last nn.Linear registered in ``model``."""
    found = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            found = name
    if found is None:
        return None
    parent_name, _, attr = found.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    return parent, attr, getattr(parent, attr)


def _imagenet_weights(backbone: str):
    import torchvision
    try:
        return torchvision.models.get_model_weights(backbone).DEFAULT
    except (ValueError, KeyError) as e:
        raise InputError(f"--pretrained: torchvision has no ImageNet weights for {backbone!r} ({e})") from None


class Trunk(nn.Module):
    """A classification backbone cut before its global pooling: ``x -> (N, C, h, w)`` features, for
    the spatial heads. ``body`` is the backbone itself (its classifier removed), so its parameter
    names (``trunk.body.layer1...``) follow the backbone's."""

    KINDS = ("tiny", "resnet", "features", "timm")

    def __init__(self, body: nn.Module, kind: str):
        super().__init__()
        self.body, self.kind = body, kind

    def forward(self, x):
        b = self.body
        if self.kind == "resnet":
            x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
            return b.layer4(b.layer3(b.layer2(b.layer1(x))))
        if self.kind == "timm":
            return b.forward_features(x)
        x = b.features(x)
        return torch.relu(x) if self.kind == "features" and b.__class__.__name__ == "DenseNet" else x


def _trunk(model: nn.Module, backbone: str) -> Trunk:
    """``model`` cut before its pooling (its classifier dropped), or a clear error when augkit does
    not know where its feature map is."""
    if isinstance(model, TinyNet):
        del model.fc, model.pool
        return Trunk(model, "tiny")
    if backbone.startswith(TIMM_PREFIX):
        # timm's own method; torch types every Module attribute it does not know as Tensor | Module
        model.reset_classifier(0)  # type: ignore[operator]
        return Trunk(model, "timm")
    if all(hasattr(model, a) for a in ("conv1", "bn1", "maxpool", "layer4", "fc")):
        model.fc, model.avgpool = nn.Identity(), nn.Identity()
        return Trunk(model, "resnet")
    if isinstance(getattr(model, "features", None), nn.Module) and hasattr(model, "classifier"):
        model.classifier = nn.Identity()
        return Trunk(model, "features")
    raise InputError(f"--backbone {backbone}: augkit does not know where its feature map is, which the spatial heads "
                     "(integral, simcc) need: use a ResNet/ResNeXt, a model with .features (efficientnet, mobilenet, "
                     "convnext, densenet), a timm/ CNN, or --head regression/rle")


class LandmarkNet(nn.Module):
    """A spatial head on a :class:`Trunk`: ``x -> head(trunk(x))``, the head's raw (N, D) output."""

    def __init__(self, trunk: Trunk, head: nn.Module):
        super().__init__()
        self.trunk, self.head = trunk, head

    def forward(self, x):
        return self.head(self.trunk(x))


def _feature_shape(trunk: Trunk, input_size) -> tuple:
    """(C, h, w) of the trunk's map for one ``input_size`` image (a dry run in eval mode)."""
    was = trunk.training
    trunk.eval()
    with torch.no_grad():
        f = trunk(torch.zeros(1, 3, *input_size))
    trunk.train(was)
    if f.ndim != 4:
        raise InputError(f"the backbone's features have shape {tuple(f.shape)}, not a (N, C, h, w) map: the spatial "
                         "heads need a convolutional backbone")
    return tuple(int(v) for v in f.shape[1:])


def build_model(backbone: str, n_points: int, pretrained: bool = False, weights=None, mean_shape=None,
                head: str = "regression", head_settings: dict | None = None, input_size=(128, 128)) -> nn.Module:
    """A backbone (by name) with a landmark head (:mod:`augkit.models.heads`).

    Args:
        backbone: a torchvision classification model name (``resnet50``, ``resnet18``,
            ``resnext50_32x4d``, ``densenet121``, ``efficientnet_b0``, ...), ``"timm/NAME"`` (a
            timm model, random or ``pretrained`` through timm's API) or ``"tiny"``.
        n_points: landmarks per face (K).
        pretrained: start from torchvision's ImageNet weights (downloaded through its weights API;
            :class:`PretrainedUnavailable` when that fails, e.g. offline).
        weights: a local state dict file (an ImageNet state dict or an augkit checkpoint); keys
            whose shapes do not fit (the old classifier) are left out.
        mean_shape: optional ``(K, 2)`` normalised mean shape: the pooled heads start there (bias at
            the mean shape, initial weights scaled by 0.01: small, not zero, so gradients reach the
            backbone from step 0).
        head: the head's name (:data:`augkit.models.heads.HEADS`); ``head_settings`` its options.
        input_size: (h, w) of the model input (the heads decode to this frame; the spatial heads
            size their layers for it).
    """
    from .heads import HEADS, build_head
    if head not in HEADS:
        raise InputError(f"--head must be one of {', '.join(HEADS)}, got {head!r}")
    out = 2 * int(n_points)
    if backbone == "tiny":
        if pretrained:
            raise InputError("--pretrained: the 'tiny' test backbone has no ImageNet weights")
        model: nn.Module = TinyNet(out)
        locate = _last_linear
    elif backbone.startswith(TIMM_PREFIX):
        model = _timm_model(backbone[len(TIMM_PREFIX):], out, pretrained)
        locate = _timm_head
        if locate(model) is None:
            raise InputError(f"--backbone {backbone}: its classifier is not one linear layer; pick another timm model")
    else:
        locate = _last_linear
        model = _torchvision_model(backbone, out, pretrained)
    if weights is not None:
        load_backbone_weights(model, weights)
    size = tuple(int(v) for v in input_size)
    if HEADS[head].spatial:
        trunk = _trunk(model, backbone)
        found = build_head(head, _feature_shape(trunk, size), n_points, size, head_settings)
        net: nn.Module = LandmarkNet(trunk, found)
    else:
        parent, attr, old = locate(model)
        found = build_head(head, old.in_features, n_points, size, head_settings)
        with torch.no_grad():   # the classifier's initial (or loaded) weights, where the shapes fit
            found.weight[: old.out_features].copy_(old.weight)
            found.bias[: old.out_features].copy_(old.bias)
        setattr(parent, attr, found)
        net = model
    if mean_shape is not None:
        found.init_mean_shape(mean_shape)
    return net


def _torchvision_model(backbone: str, out: int, pretrained: bool) -> nn.Module:
    """A torchvision classification model whose last linear layer has ``out`` outputs."""
    import torchvision
    names = torchvision.models.list_models(module=torchvision.models)
    if backbone not in names:
        close = [n for n in names if n.startswith(backbone[:4])][:8]
        raise InputError(f"unknown backbone {backbone!r}: expected a torchvision classification model name "
                         f"(e.g. {', '.join(close or ['resnet50', 'resnet18', 'efficientnet_b0'])}) or 'tiny'")
    kwargs = {}
    if backbone in ("inception_v3", "googlenet"):
        kwargs["aux_logits"] = False
        kwargs["init_weights"] = True
    if pretrained:
        w = _imagenet_weights(backbone)
        model = torchvision.models.get_model(backbone, **kwargs)
        try:
            state = w.get_state_dict(progress=False, check_hash=False)
        except Exception as e:  # URLError, socket errors, HTTP errors...
            raise PretrainedUnavailable(
                f"--pretrained: could not download the ImageNet weights {w} for {backbone} from {w.url} "
                f"({type(e).__name__}: {e}). Are you offline? Download the file elsewhere and pass "
                f"--weights FILE, or put it in {_hub_dir()}/checkpoints/.") from None
        if backbone in ("inception_v3", "googlenet"):
            state = {k: v for k, v in state.items() if not k.startswith("aux")}
        model.load_state_dict(state)
    else:
        model = torchvision.models.get_model(backbone, weights=None, **kwargs)
    found = _last_linear(model)
    if found is None:
        raise InputError(f"backbone {backbone!r} has no linear classifier to replace with a regression head")
    parent, attr, old = found
    setattr(parent, attr, nn.Linear(old.in_features, out))
    return model


def _hub_dir():
    return torch.hub.get_dir()


def load_backbone_weights(model: nn.Module, path) -> tuple:
    """Load a local state dict (or the ``model`` of an augkit checkpoint) into ``model``; keys that
    are missing or do not fit in shape are left out and reported. Returns (loaded, skipped) key lists."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"--weights: {path}: no such file") from None
    except Exception as e:
        raise InputError(f"--weights: {path}: not a PyTorch state dict ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(f"--weights: {path}: expected a state dict, got {type(state).__name__}")
    state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    state = {k[11:] if k.startswith("trunk.body.") else k: v for k, v in state.items()}  # a spatial-head model's
    own = model.state_dict()
    fit = {k: v for k, v in state.items() if k in own and getattr(v, "shape", None) == own[k].shape}
    if not fit:
        raise InputError(f"--weights: {path}: none of its {len(state)} tensors fit this model "
                         f"(first keys: {list(state)[:3]}, model's: {list(own)[:3]})")
    model.load_state_dict(fit, strict=False)
    return sorted(fit), sorted(set(state) - set(fit))


def decode(output: torch.Tensor, size_hw) -> torch.Tensor:
    """The regression head's output -> input-frame pixels. Shape: (N, 2K) -> (N, K, 2)."""
    return from_unit(output.reshape(output.shape[0], -1, 2), size_hw)


def encode(points: torch.Tensor, size_hw) -> torch.Tensor:
    """Input-frame pixels -> normalised targets. Shape: (N, K, 2) -> (N, K, 2) (flatten for the head)."""
    return to_unit(points, size_hw)
