"""The options of a training run, declared once: :class:`TrainConfig`.

Each field carries its command-line metadata (help, choices, range, flag spelling), and the
``augkit train`` options are generated from the fields (:func:`augkit.cli.train.train_options`).
:func:`resolve_config` fills the "default for this kind of run" values (``None``: the synthetic
demo or ``--data``) and checks every choice and range; :func:`read_config_file` reads a run's
``config.json`` or a YAML/JSON file of option values (``augkit train --config``).

This module imports no torch: the command line is built from it before torch is needed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import typing
from typing import Any
from dataclasses import dataclass, field

from augkit.errors import InputError, UsageError
from augkit.data import PERSON_REGEX
from augkit.files import MAX_YAML_BYTES, read_json, read_yaml

from augkit.data import FORMAT_NAMES
from augkit.models import HEAD_NAMES, HEAD_SETTINGS, LOSSES

__all__ = ["DATA_DEFAULTS", "DEMO_DEFAULTS", "PERSON_REGEX", "ConfigFileError", "TrainConfig", "check_value", "head_settings",
           "option_fields", "option_flag", "read_config_file", "resolve_config", "value_type"]

DEMO_DEFAULTS = {"backbone": "resnet18", "size": 64, "epochs": 8, "batch_size": 32, "lr": 2e-3, "demo_train": 2000,
                 "demo_val": 300}
DATA_DEFAULTS = {"backbone": "resnet50", "size": 128, "epochs": 30, "batch_size": 32, "lr": 1e-3}

def head_settings(cfg) -> dict:
    """The settings of ``cfg.head`` from a (resolved) config."""
    return {k: getattr(cfg, k) for k in HEAD_SETTINGS[cfg.head]}


def _opt(default, help: str = "", *, choices=None, range=None, open_range=False, flag=None, path=None, lr=False,
         metavar=None, hidden=False, hook=None, resume=False):
    """A config field with its command-line metadata.

    Args:
        default: the default value (``None``: the default for this kind of run, or off).
        help: the option's help text.
        choices: the allowed values (a ``--x`` of one of these).
        range: ``(low, high)`` bounds of a number (either may be ``None``); ``open_range`` excludes both ends.
        flag: the option's spelling when it is not ``--field-name`` (e.g. ``--x/--no-x`` for a switch).
        path: ``"file"`` (an existing file) or ``"folder"`` (a folder, made if missing).
        lr: a learning rate: a positive number or ``auto``.
        hook: ``"module:Class"`` of the :class:`~augkit.train.hooks.Hook` this option switches on
            (when its value is set: not None, False or 0; or when the class's ``applies(value)``
            says so), e.g. ``"augkit.train.ema:EMA"``.
        resume: a ``--resume`` may change it (how long, how loud, how parallel: not what is trained).
    """
    meta = {"help": help, "choices": tuple(choices) if choices else None, "range": range, "open_range": open_range,
            "flag": flag, "path": path, "lr": lr, "metavar": metavar, "hidden": hidden, "hook": hook,
            "resume": resume}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class TrainConfig:
    """Every option of a run (saved as ``config.json`` in the run folder). ``None`` means "the
    default for this kind of run" (demo or --data), filled by :func:`resolve_config`. Frozen: a
    changed value is a new config (``dataclasses.replace``), so what a run was resolved with stays
    what it runs with."""

    data: str | None = _opt(None, "Dataset: competition folder (landmarks.csv + images/, or its parent with train/), "
                            "a CSV file, or a folder of images with .pts. Default: the built-in synthetic demo faces.")
    format: str | None = _opt(None, "Dataset format (default: detected).", choices=FORMAT_NAMES)
    strict: bool = _opt(False, "Stop at the first bad row or image instead of skipping it.")
    verify: str = _opt("decode", "Check every image up front by decoding it (corrupt files are skipped), or read "
                       "headers only.", choices=("decode", "header"))
    scheme: str | None = _opt(None, "Landmark scheme (name or YAML/JSON file); default ibug68 for 68 points.")
    out: str | None = _opt(None, "Run folder (default: runs/<time>-<data>).", path="folder", resume=True)
    backbone: str | None = _opt(None, "torchvision classification model name (resnet50 for --data, resnet18 for the "
                                "demo; resnet18/34/101, resnext50_32x4d, densenet121, efficientnet_b0, ...), timm/NAME "
                                "(a timm model, e.g. timm/resnet18, timm/convnext_nano; the [timm] extra) or 'tiny'.")
    pretrained: bool = _opt(False, "Start from ImageNet weights (torchvision's or timm's; downloads them).")
    weights: str | None = _opt(None, "Start from a local state dict (ImageNet or an augkit checkpoint).", path="file")
    size: int | None = _opt(None, "Model input side in pixels [128 for --data, 64 for the demo].", range=(16, 2048))
    preprocess: str = _opt("crop", "Fit images to the input: scale the short side + centre crop, or letterbox the "
                           "whole image.", choices=("crop", "letterbox"))
    aug: str | None = _opt(None, "Augmentation pipeline YAML (applied after preprocessing); default: augkit's face "
                           "pipeline.", path="file")
    no_aug: bool = _opt(False, "Train without augmentation.")
    epochs: int | None = _opt(None, "Epochs [30 for --data, 8 for the demo].", range=(1, None), resume=True)
    batch_size: int | None = _opt(None, "Batch size per process [32].", range=(1, None))
    lr: float | str | None = _opt(None, "Peak learning rate [1e-3 for --data, 2e-3 for the demo], or 'auto': run the "
                                  "--lr-find range test first and train at its suggestion.", lr=True,
                                  hook="augkit.train.lr_find:AutoLR")
    lr_find: bool = _opt(False, "Only the LR range test (same data and options): an exponential LR sweep; writes "
                         "lr_find.png and lr_find.json with the suggested peak LR; no training, no checkpoint.")
    lr_find_steps: int = _opt(100, "Steps of the LR range test (it stops earlier once the loss diverges).",
                              range=(10, 100000))
    ema: float | None = _opt(None, "Keep an exponential moving average of the weights (e.g. 0.999; BatchNorm "
                             "statistics too), validate it and save it as the model (best.pt / last.pt; predict and "
                             "TTA use it).", range=(0, 1), open_range=True, metavar="DECAY",
                             hook="augkit.train.ema:EMA")
    freeze_epochs: int = _opt(0, "Train only the regression head for the first N epochs (backbone frozen, in eval "
                              "mode), then all; the LR schedule starts again, warm-up included, when the backbone "
                              "joins.", range=(0, None),
                              hook="augkit.train.freeze:FreezeBackbone")
    early_stop: int = _opt(0, "Stop when the validation NME has not improved for N epochs (0: off); best.pt "
                           "keeps the best epoch.", range=(0, None), metavar="N", hook="augkit.train.early_stop:EarlyStop",
                           resume=True)
    tensorboard: bool = _opt(False, "Also write TensorBoard event files into the run folder (loss and LR per step, "
                             "validation vs mean shape, worst images per epoch, augmented samples); the [tb] extra.",
                             hook="augkit.train.tb:TensorBoard", resume=True)
    weight_decay: float = _opt(1e-4, "Weight decay of the optimiser.")
    optimizer: str = _opt("adamw", "Optimiser.", choices=("adamw", "adam", "sgd"))
    momentum: float = _opt(0.9, "SGD momentum (Nesterov).")
    scheduler: str = _opt("cosine", "cosine (with warm restarts every --restart-epochs), one-cycle, "
                          "reduce-on-plateau.", choices=("cosine", "onecycle", "plateau", "none"))
    restart_epochs: float | None = _opt(None, "Cosine restart period in epochs (default: no restart).")
    warmup: float = _opt(0.5, "Epochs of linear LR warm-up.")
    clip: float = _opt(5.0, "Gradient-norm clipping (0: off).")
    head: str = _opt("regression", "Landmark head: regression (2K coordinates), rle (coordinates + a per-landmark "
                     "sigma trained by the residual's log-likelihood), integral (heatmaps at --heatmap-stride, "
                     "soft-argmax; sigma from their spread) or simcc (1-D distributions per axis; sigma from them). "
                     "Recorded in the checkpoint.", choices=HEAD_NAMES)
    loss: str = _opt(HEAD_SETTINGS["regression"]["loss"], "Landmark loss on normalised coordinates (the regression and integral heads).",
                     choices=LOSSES)
    rle_dist: str = _opt(HEAD_SETTINGS["rle"]["rle_dist"], "rle head: the residual's density (its sigma is the standard deviation in "
                         "both). gaussian: a sigma-weighted squared error, the competition's metric; laplace: an "
                         "L1 that fits the median (benchmarks/heads.py: gaussian lower MSE on both sets).",
                         choices=("laplace", "gaussian"))
    heatmap_stride: int = _opt(HEAD_SETTINGS["integral"]["heatmap_stride"], "integral head: heatmap stride in input pixels (the neck upsamples the "
                               "backbone's map to it): 4, 8 or 16.", range=(4, 16))
    simcc_ratio: float = _opt(HEAD_SETTINGS["simcc"]["simcc_ratio"], "simcc head: bins per input pixel.", range=(1.0, 4.0))
    simcc_sigma: float = _opt(HEAD_SETTINGS["simcc"]["simcc_sigma"], "simcc head: the Gaussian label's sigma in input pixels.", range=(0.5, 20.0))
    trim: float = _opt(0.0, "Trimmed loss: leave out this fraction of each batch's worst samples (label noise).",
                       range=(0, 0.9))
    val_fraction: float = _opt(0.1, "Fraction of the images held out for validation.", range=(0, 0.9))
    val_group: str | None = _opt(None, "Split validation by group: a regex on the file name whose first group (or "
                                 f"match) is the group, e.g. a person; 'person' = '{PERSON_REGEX}' (ytf68 names).")
    workers: int | None = _opt(None, "DataLoader workers per process [cores per process - 1].", range=(0, None), resume=True)
    seed: int = _opt(0, "Seed of the split, the initial weights and every sample's augmentation.")
    device: str = _opt("auto", "auto, cpu, cuda or cuda:N.", resume=True)
    amp: str = _opt("auto", "CUDA mixed precision (auto: bf16 where supported, else fp16).",
                    choices=("auto", "bf16", "fp16", "off"))
    channels_last: bool = _opt(True, "channels_last on CUDA.", flag="--channels-last/--no-channels-last")
    time_budget: float | None = _opt(None, "Stop training after this many minutes (then validate).", resume=True)
    checkpoint_minutes: float = _opt(5.0, "Also write last.pt mid-epoch this often.", resume=True)
    checkpoint_steps: int = _opt(0, "Also write last.pt mid-epoch every N steps (0: off).", range=(0, None), resume=True)
    limit: int | None = _opt(None, "Use only the first N images of --data.", range=(1, None))
    exclude: str | None = _opt(None, "CSV with a file_name column (e.g. augkit audit's audit.csv): leave those images "
                               "out (only rows with suspect true when that column exists); counted as 'excluded' in "
                               "skipped.csv.", path="file")
    demo_train: int | None = _opt(None, "Synthetic demo: training faces [2000].", range=(1, None))
    demo_val: int | None = _opt(None, "Synthetic demo: validation faces [300].", range=(0, None))
    threads: int | None = _opt(None, "torch CPU threads per process.", range=(1, None), resume=True)
    quiet: bool = _opt(False, "No progress bars or per-epoch lines (the final summary still prints).", resume=True)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def option_fields() -> tuple:
    """The fields of :class:`TrainConfig` (each one ``augkit train`` option), in declaration order."""
    return dataclasses.fields(TrainConfig)


def option_flag(f) -> str:
    """The long option of a field: ``--batch-size`` for ``batch_size`` (the first of a ``--x/--no-x`` switch)."""
    return (f.metadata.get("flag") or "--" + f.name.replace("_", "-")).split("/")[0]


def value_type(f) -> type:
    """The Python type of a field's values (``int`` for ``int | None``; ``float`` for the learning rate)."""
    hint = typing.get_type_hints(TrainConfig)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return args[0]


def _one_of(choices) -> str:
    return ", ".join(choices[:-1]) + " or " + choices[-1] if len(choices) > 1 else choices[0]


def check_value(f, value) -> str | None:
    """What is wrong with ``value`` for field ``f`` (its choices and range), or ``None`` when it fits."""
    meta = f.metadata
    if value is None or isinstance(value, bool):
        return None
    if meta["choices"] and value not in meta["choices"]:
        return f"must be {_one_of(meta['choices'])}, got {value!r}"
    if meta["range"] and isinstance(value, (int, float)):
        low, high = meta["range"]
        if meta["open_range"]:
            bad = (low is not None and not value > low) or (high is not None and not value < high)
            words = f"between {low} and {high} (exclusive)"
        else:
            bad = (low is not None and value < low) or (high is not None and value > high)
            words = f"at least {low}" if high is None else f"between {low} and {high}"
        if bad or math.isnan(value):
            return f"must be {words}, got {value}"
    return None


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """Fill the ``None`` defaults (demo vs real data) and check the choices and ranges."""
    from . import data as train_data
    defaults = DEMO_DEFAULTS if cfg.data is None else DATA_DEFAULTS
    filled: dict[str, Any] = {k: v for k, v in defaults.items() if getattr(cfg, k) is None}
    if cfg.workers is None:
        filled["workers"] = train_data.default_workers()
    d = dataclasses.replace(cfg, **filled)
    for f in option_fields():
        if f.metadata["choices"] and (problem := check_value(f, getattr(d, f.name))):
            raise InputError(f"{option_flag(f)} {problem}")
    d = dataclasses.replace(d, lr=_resolve_lr(d.lr))
    assert d.epochs is not None and d.batch_size is not None and d.size is not None  # filled from the defaults
    if d.epochs < 1 or d.batch_size < 1 or d.size < 16:
        raise InputError("--epochs and --batch-size must be >= 1 and --size >= 16")
    if d.heatmap_stride not in (4, 8, 16):
        raise InputError(f"--heatmap-stride must be 4, 8 or 16, got {d.heatmap_stride}")
    if d.lr_find_steps < 10:
        raise InputError(f"--lr-find-steps must be at least 10, got {d.lr_find_steps}")
    if d.ema is not None and not 0.0 < d.ema < 1.0:
        raise InputError(f"--ema must be a decay between 0 and 1 (e.g. 0.999), got {d.ema}")
    if not 0 <= d.freeze_epochs < d.epochs:
        raise InputError(f"--freeze-epochs must be at least 0 and below --epochs ({d.epochs}): the backbone has to "
                         f"train for at least one epoch, got {d.freeze_epochs}")
    for f in option_fields():
        if problem := check_value(f, getattr(d, f.name)):
            raise InputError(f"{option_flag(f)} {problem}")
    return d


def _resolve_lr(lr):
    """A learning rate as a positive float, or ``"auto"``."""
    if isinstance(lr, str):
        if lr.strip().lower() == "auto":
            return "auto"
        try:
            lr = float(lr)
        except ValueError:
            raise InputError(f"--lr must be a number or 'auto', got {lr!r}") from None
    if not (math.isfinite(lr) and lr > 0):
        raise InputError(f"--lr must be positive (or 'auto'), got {lr}")
    return lr


def _read_json(path):
    return read_json(path, MAX_YAML_BYTES)  # an options file: as small as a YAML one


class ConfigFileError(UsageError):
    """A ``--config`` file that cannot be used: one line naming the file and the key."""


def read_config_file(path) -> dict:
    """The option values of a run's ``config.json`` or a YAML/JSON mapping of options, by field name.

    Keys may be spelt as fields (``batch_size``) or as options (``batch-size``). A run's own
    ``config.json`` (its ``out`` is the folder the file is in) gives no ``out``: a rerun goes to a
    new folder. Values are not converted here (the command line's types check them).

    Raises:
        ConfigFileError: not a mapping, or an unknown key (named with the closest option).
    """
    try:
        values = _read_json(path) if str(path).lower().endswith(".json") else read_yaml(path)
    except (ValueError, OSError) as e:
        raise ConfigFileError(" ".join(str(e).split())) from None
    if not isinstance(values, dict):
        raise ConfigFileError(f"{path}: expected a mapping of augkit train options (key: value), "
                              f"got {type(values).__name__}")
    names = [f.name for f in option_fields()]
    out = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in names:
            near = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else " (not an augkit train option)"
            raise ConfigFileError(f"{path}: unknown key {key!r}{hint}")
        out[name] = value
    own = out.get("out")
    if isinstance(own, str) and os.path.abspath(own) == os.path.dirname(os.path.abspath(path)):
        del out["out"]
    return out
