"""Optional dependency groups ("extras") and the message a command gives when one is missing.

``pip install augkit`` brings numpy, OpenCV, PyYAML and click only; ``[train]`` adds torch,
torchvision, pandas, scipy, tqdm and matplotlib (training, TTA, prediction, dataset readers);
``[albu]`` adds albumentations (the interop); ``[tb]`` tensorboard (``augkit train --tensorboard``);
``[timm]`` timm (``--backbone timm/NAME``); ``[onnx]`` onnx, onnxscript and onnxruntime (``augkit export``,
``augkit predict --onnx``); ``[all]`` all of them.
"""

from __future__ import annotations

import importlib.util

from augkit.errors import AugkitError

__all__ = ["EXTRAS", "MissingExtra", "missing_modules", "require_extra"]

EXTRAS = {
    "train": ("torch", "torchvision", "pandas", "scipy", "tqdm", "matplotlib"),
    "albu": ("albumentations",),
    "tb": ("tensorboard",),
    "timm": ("timm",),
    "onnx": ("onnx", "onnxscript", "onnxruntime"),
}


class MissingExtra(AugkitError, ImportError):
    """A command or function needs an optional dependency group that is not installed."""


def missing_modules(modules) -> list[str]:
    """The modules of ``modules`` that cannot be imported here (``sys.modules[name] = None`` counts)."""
    import sys
    out = []
    for name in modules:
        if name in sys.modules:
            if sys.modules[name] is None:
                out.append(name)
            continue
        try:
            if importlib.util.find_spec(name) is None:
                out.append(name)
        except (ImportError, ValueError):
            out.append(name)
    return out


def require_extra(extra: str, what: str, modules=None) -> None:
    """Raise :class:`MissingExtra` naming the extra to install when one of its modules is missing.

    Args:
        extra: a key of :data:`EXTRAS` (``"train"``, ``"albu"``, ``"tb"``, ``"timm"``, ``"onnx"``).
        what: what needs it, e.g. ``"augkit train"``.
        modules: the ones of the extra's modules that ``what`` needs (None: all of them).
    """
    missing = missing_modules(EXTRAS[extra] if modules is None else modules)
    if missing:
        raise MissingExtra(f"{what} needs the [{extra}] extra: pip install 'augkit[{extra}]' "
                           f"(not installed: {', '.join(missing)})")
