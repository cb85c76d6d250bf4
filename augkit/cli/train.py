"""``augkit train``: the click command. Its options are generated from the fields of
:class:`~augkit.train.config.TrainConfig` (:func:`train_options`); the few that are not part of a
run's config (``--config``, ``--resume``, ``--nproc``) are declared here. Importing this module
imports click (and the torch-free config) only; torch comes in when the command runs."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys

import click
from click.core import ParameterSource

from . import Command

from augkit.errors import UsageError
from augkit.run_folder import RunFolder
from augkit.train.config import (
    option_fields,
    option_flag,
    read_config_file,
    value_type,
)

__all__ = ["NON_FIELD_OPTIONS", "config_from_args", "config_from_params", "train", "train_options",
           "with_file_defaults"]

# the options of `augkit train` that are not TrainConfig fields (how to run, not what to train)
NON_FIELD_OPTIONS = ("config", "resume", "auto_resume", "nproc", "launch_config")


class _LR(click.ParamType):
    """--lr: a positive number or ``auto``."""

    name = "LR|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a number nor 'auto'", param, ctx)
        if not (v > 0 and math.isfinite(v)):
            self.fail(f"{value!r}: the learning rate must be a positive number", param, ctx)
        return v


def _click_type(f):
    """The click type of a config field, from its metadata and annotation."""
    meta = f.metadata
    if meta["lr"]:
        return _LR()
    if meta["choices"]:
        return click.Choice(meta["choices"])
    if meta["path"]:
        return click.Path(exists=True, dir_okay=False) if meta["path"] == "file" else click.Path(file_okay=False)
    kind = value_type(f)
    if meta["range"]:
        low, high = meta["range"]
        ranged = click.IntRange if kind is int else click.FloatRange
        return ranged(low, high, min_open=meta["open_range"], max_open=meta["open_range"])
    return click.STRING if kind is str else kind


def field_option(f):
    """The ``click.option`` decorator of one config field."""
    meta = f.metadata
    flag = meta["flag"] or option_flag(f)
    attrs = {"default": f.default, "help": meta["help"], "hidden": meta["hidden"],
             "show_default": True if f.default is not None else None}
    if value_type(f) is bool:
        attrs["is_flag"] = True
        attrs["show_default"] = True if "/" in flag else None   # a switch shows its default, a plain flag is off
    else:
        attrs["type"] = _click_type(f)
        if meta["metavar"]:
            attrs["metavar"] = meta["metavar"]
    return click.option(flag, f.name, **attrs)


def train_options(skip=()):
    """Decorate a click command with one option per :class:`TrainConfig` field (but ``skip``), in
    declaration order: the single declaration of ``augkit train``'s options (and ``augkit audit``'s)."""
    def decorate(command):
        for f in reversed(option_fields()):
            if f.name not in skip:
                command = field_option(f)(command)
        return command
    return decorate


def _file_value(ctx, param, f, value, path):
    """A value from an options file, converted and checked by the option's own type."""
    kind = value_type(f)
    if value is None:
        if f.default is None:
            return None
        raise UsageError(f"{path}: {f.name}: null is not allowed (expected {kind.__name__})")
    wrong = isinstance(value, (list, dict)) or (isinstance(value, bool) and kind is not bool) or \
        (kind is int and isinstance(value, float) and not value.is_integer())
    if wrong:
        raise UsageError(f"{path}: {f.name}: expected {kind.__name__}, got {value!r}")
    try:
        return param.type_cast_value(ctx, value)
    except click.BadParameter as e:
        raise UsageError(f"{path}: {f.name}: {e.message}") from None


def with_file_defaults(ctx, params: dict, path, ignore=()) -> dict:
    """``params`` with the values of the options file ``path`` (see
    :func:`~augkit.train.config.read_config_file`) where the command line gave none; keys in
    ``ignore`` or not among ``params`` are left out."""
    if not path:
        return params
    values = read_config_file(path)   # a bad file: ConfigFileError, a UsageError
    fields = {f.name: f for f in option_fields()}
    by_name = {p.name: p for p in ctx.command.params}
    merged = dict(params)
    for name, value in values.items():
        if name in ignore or name not in params:
            continue
        if ctx.get_parameter_source(name) in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP, None):
            merged[name] = _file_value(ctx, by_name[name], fields[name], value, path)
    return merged


@click.command("train", cls=Command)
@click.option("--config", "config", default=None, type=click.Path(exists=True),
              help="Option values from a file: a run's config.json (or its folder) or a YAML/JSON mapping of "
                   "options; options given on the command line override them. A run's own config.json reruns it "
                   "exactly, into --out or a new folder.")
@train_options()
@click.option("--resume", default=None, type=click.Path(exists=True),
              help="Continue the run in this folder (or this last.pt) where it stopped.")
@click.option("--auto-resume", is_flag=True,
              help="Continue the run in --out if it has a checkpoint, else start it there: one command line for "
                   "a job that a scheduler requeues or torchrun --max-restarts restarts.")
@click.option("--nproc", default=1, show_default=True, type=click.IntRange(1),
              help="Processes (DistributedDataParallel via torchrun; gloo on CPU, NCCL on CUDA).")
@click.option("--launch-config", default=None, hidden=True, type=click.Path(exists=True, dir_okay=False))
def train(config, resume, auto_resume, nproc, launch_config, **options):
    """Train a landmark regressor (a torchvision backbone + 2K-output head) with augkit's fused
    augmentation; validate in original pixels against the mean-shape baseline; write a run folder
    (config, log.csv/log.jsonl, curves.png, last.pt, best.pt, skipped.csv). With no --data: the
    built-in synthetic demo (resnet18 at 64 px, a few minutes on 2 CPU cores)."""
    _require_extras(options)
    from augkit.train.config import TrainConfig
    if launch_config:
        with open(launch_config, encoding="utf-8") as f:
            spec = json.load(f)
        cfg, resume = TrainConfig.from_dict(spec["config"]), spec.get("resume")
        auto_resume = bool(spec.get("auto_resume"))
    else:
        ctx = click.get_current_context()
        cfg = config_from_params(with_file_defaults(ctx, options, _options_file(config)))
        if auto_resume:
            resume = _auto_resume(cfg, resume)
    if nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        from augkit.signals import stop_cleanly
        with stop_cleanly("augkit train"):
            sys.exit(_launch(cfg, resume, nproc, auto_resume))
    _run(cfg, resume, replace_unsaved=auto_resume)


def _auto_resume(cfg, resume):
    """``--auto-resume``: the run folder ``--out`` when it holds a checkpoint (it is continued),
    else None (a new run starts there)."""
    if resume:
        raise click.UsageError("--auto-resume continues the run in --out by itself: give one of --resume, "
                               "--auto-resume")
    if not cfg.out:
        raise click.UsageError("--auto-resume needs --out: the run folder to continue or to start")
    folder = RunFolder(cfg.out)
    if folder.resume_checkpoint() is None:  # a new run (also over one stopped before its first checkpoint)
        return None
    click.echo(f"--auto-resume: continuing the run in {folder.path}", err=True)
    return folder.path


def _options_file(path):
    """``--config``: a file, or a run folder (its config.json)."""
    return RunFolder(path).config_json if path and os.path.isdir(path) else path


def _require_extras(options: dict) -> None:
    """Fail with one line naming the extra when torch (or the one an option needs) is missing."""
    from augkit.extras import require_extra
    require_extra("train", "augkit train")
    if options.get("tensorboard"):
        require_extra("tb", "augkit train --tensorboard")
    backbone = options.get("backbone")
    if backbone and backbone.startswith("timm/"):
        require_extra("timm", f"augkit train --backbone {backbone}")


def _run(cfg, resume, replace_unsaved: bool = False) -> None:
    """Run the training, stopped cleanly by SIGTERM / SIGUSR1."""
    from augkit.signals import stop_cleanly
    from augkit.train.loop import run
    with stop_cleanly("augkit train"):
        run(cfg, resume=resume, replace_unsaved=replace_unsaved)


def config_from_params(params: dict):
    """The :class:`TrainConfig` of parsed ``augkit train`` options (click's parameter names, which
    are the field names; ``fmt`` is still read as ``format``)."""
    from augkit.train.config import TrainConfig
    if "format" not in params and "fmt" in params:
        params = {**params, "format": params["fmt"]}
    return TrainConfig.from_dict(params)


def config_from_args(args, command: str = "augkit train"):
    """The :class:`TrainConfig` that ``augkit train ARGS`` would run with, parsed by the train
    command itself (same options, defaults, checks and ``--config`` file; a bad option is a click
    usage error). Returns ``(config, parsed options)``."""
    ctx = train.make_context(command, list(args))
    params = with_file_defaults(ctx, ctx.params, _options_file(ctx.params.get("config")))
    return config_from_params(params), params


def _launch(cfg, resume, nproc, auto_resume: bool = False) -> int:
    """Re-run this command under ``torch.distributed.run`` with ``nproc`` processes."""
    import tempfile

    from augkit.run_folder import default_run_dir
    if not resume:
        cfg = dataclasses.replace(cfg, out=os.path.abspath(cfg.out or default_run_dir(cfg.data)))
    fd, spec = tempfile.mkstemp(prefix="augkit-launch-", suffix=".json")  # not in the run folder: a failed
    try:                                                                 # start leaves no folder behind
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"config": cfg.to_dict(), "resume": resume, "auto_resume": auto_resume}, f, indent=1)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "augkit.cli.train", "--launch-config", spec]
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
        # torchrun forwards SIGUSR1 too, and waits for the ranks to save before it kills them (its own
        # default: 30 s); older torchrun versions ignore these variables
        env.setdefault("PET_SIGNALS_TO_HANDLE", "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1")
        env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "600")
        # its own session: a signal to this process group reaches torchrun once, from here
        return _wait_forwarding(subprocess.Popen(cmd, env=env, start_new_session=True))
    finally:
        os.remove(spec)


def _wait_forwarding(p) -> int:
    """Wait for the torchrun process ``p`` (in its own session); a stop signal here (SIGTERM,
    SIGUSR1, or Ctrl-C's SIGINT) is passed on to it, which torchrun forwards to every rank (they
    save ``last.pt`` at one step and exit), then re-raised once it has finished."""
    import signal

    from augkit.signals import Terminated
    try:
        return p.wait()
    except Terminated:
        p.send_signal(signal.SIGTERM)  # every torchrun handles SIGTERM (SIGUSR1 only newer ones)
        p.wait()
        raise
    except KeyboardInterrupt:
        p.send_signal(signal.SIGINT)
        p.wait()
        raise


if __name__ == "__main__":
    from augkit.signals import stop_cleanly
    with stop_cleanly("augkit train", process_exit=True):
        train()
