"""``augkit train``: the click command. Importing this module imports click only; torch comes in
when the command runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click

__all__ = ["train", "config_from_args", "config_from_params"]


class _LR(click.ParamType):
    """--lr: a positive number or ``auto``."""

    name = "LR|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, float) or value == "auto":
            return value
        if str(value).strip().lower() == "auto":
            return "auto"
        try:
            v = float(value)
        except ValueError:
            self.fail(f"{value!r} is neither a number nor 'auto'", param, ctx)
        if not v > 0 or v != v or v == float("inf"):
            self.fail(f"{value!r}: the learning rate must be a positive number", param, ctx)
        return v


@click.command("train")
@click.option("--data", default=None, help="Dataset: competition folder (landmarks.csv + images/, or its parent with "
              "train/), a CSV file, or a folder of images with .pts. Default: the built-in synthetic demo faces.")
@click.option("--format", "fmt", type=click.Choice(["competition", "csv", "pts"]), default=None,
              help="Dataset format (default: detected).")
@click.option("--strict", is_flag=True, help="Stop at the first bad row or image instead of skipping it.")
@click.option("--verify", type=click.Choice(["decode", "header"]), default="decode", show_default=True,
              help="Check every image up front by decoding it (corrupt files are skipped), or read headers only.")
@click.option("--scheme", default=None, help="Landmark scheme (name or YAML/JSON file); default ibug68 for 68 points.")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Run folder (default: runs/<time>-<data>).")
@click.option("--resume", default=None, type=click.Path(exists=True),
              help="Continue the run in this folder (or this last.pt) where it stopped.")
@click.option("--backbone", default=None, help="torchvision classification model name (resnet50 for --data, resnet18 "
              "for the demo; resnet18/34/101, resnext50_32x4d, densenet121, efficientnet_b0, ...), timm/NAME (a timm "
              "model, e.g. timm/resnet18, timm/convnext_nano; the [timm] extra) or 'tiny'.")
@click.option("--pretrained", is_flag=True,
              help="Start from ImageNet weights (torchvision's or timm's; downloads them).")
@click.option("--weights", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Start from a local state dict (ImageNet or an augkit checkpoint).")
@click.option("--size", default=None, type=click.IntRange(16, 2048),
              help="Model input side in pixels [128 for --data, 64 for the demo].")
@click.option("--preprocess", type=click.Choice(["crop", "letterbox"]), default="crop", show_default=True,
              help="Fit images to the input: scale the short side + centre crop, or letterbox the whole image.")
@click.option("--aug", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Augmentation pipeline YAML (applied after preprocessing); default: augkit's face pipeline.")
@click.option("--no-aug", is_flag=True, help="Train without augmentation.")
@click.option("--epochs", default=None, type=click.IntRange(1), help="Epochs [30 for --data, 8 for the demo].")
@click.option("--batch-size", default=None, type=click.IntRange(1), help="Batch size per process [32].")
@click.option("--lr", default=None, type=_LR(), help="Peak learning rate [1e-3 for --data, 2e-3 for the demo], or "
              "'auto': run the --lr-find range test first and train at its suggestion.")
@click.option("--lr-find", is_flag=True, help="Only the LR range test (same data and options): an exponential LR "
              "sweep; writes lr_find.png and lr_find.json with the suggested peak LR; no training, no checkpoint.")
@click.option("--lr-find-steps", default=100, show_default=True, type=click.IntRange(10, 100000),
              help="Steps of the LR range test (it stops earlier once the loss diverges).")
@click.option("--ema", default=None, type=click.FloatRange(0, 1, min_open=True, max_open=True), metavar="DECAY",
              help="Keep an exponential moving average of the weights (e.g. 0.999; BatchNorm statistics too), "
                   "validate it and save it as the model (best.pt / last.pt; predict and TTA use it).")
@click.option("--freeze-epochs", default=0, show_default=True, type=click.IntRange(0),
              help="Train only the regression head for the first N epochs (backbone frozen, in eval mode), then all; "
                   "the LR schedule starts again, warm-up included, when the backbone joins.")
@click.option("--tensorboard", is_flag=True, help="Also write TensorBoard event files into the run folder (loss and LR "
              "per step, validation vs mean shape, worst images per epoch, augmented samples); the [tb] extra.")
@click.option("--weight-decay", default=1e-4, show_default=True, type=float)
@click.option("--optimizer", type=click.Choice(["adamw", "adam", "sgd"]), default="adamw", show_default=True)
@click.option("--momentum", default=0.9, show_default=True, type=float, help="SGD momentum (Nesterov).")
@click.option("--scheduler", type=click.Choice(["cosine", "onecycle", "plateau", "none"]), default="cosine",
              show_default=True, help="cosine (with warm restarts every --restart-epochs), one-cycle, reduce-on-plateau.")
@click.option("--restart-epochs", default=None, type=float, help="Cosine restart period in epochs (default: no restart).")
@click.option("--warmup", default=0.5, show_default=True, type=float, help="Epochs of linear LR warm-up.")
@click.option("--clip", default=5.0, show_default=True, type=float, help="Gradient-norm clipping (0: off).")
@click.option("--loss", type=click.Choice(["mse", "l1", "smooth-l1", "wing"]), default="smooth-l1", show_default=True)
@click.option("--trim", default=0.0, show_default=True, type=click.FloatRange(0, 0.9),
              help="Trimmed loss: leave out this fraction of each batch's worst samples (label noise).")
@click.option("--val-fraction", default=0.1, show_default=True, type=click.FloatRange(0, 0.9))
@click.option("--val-group", default=None, help="Split validation by group: a regex on the file name whose first group "
              "(or match) is the group, e.g. a person; 'person' = '^(.+?)_\\d+_[^_]+$' (ytf68 names).")
@click.option("--workers", default=None, type=click.IntRange(0), help="DataLoader workers per process [cores per process - 1].")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--amp", type=click.Choice(["auto", "bf16", "fp16", "off"]), default="auto", show_default=True,
              help="CUDA mixed precision (auto: bf16 where supported, else fp16).")
@click.option("--channels-last/--no-channels-last", default=True, show_default=True, help="channels_last on CUDA.")
@click.option("--nproc", default=1, show_default=True, type=click.IntRange(1),
              help="Processes (DistributedDataParallel via torchrun; gloo on CPU, NCCL on CUDA).")
@click.option("--time-budget", default=None, type=float, help="Stop training after this many minutes (then validate).")
@click.option("--checkpoint-minutes", default=5.0, show_default=True, type=float,
              help="Also write last.pt mid-epoch this often.")
@click.option("--checkpoint-steps", default=0, show_default=True, type=click.IntRange(0),
              help="Also write last.pt mid-epoch every N steps (0: off).")
@click.option("--limit", default=None, type=click.IntRange(1), help="Use only the first N images of --data.")
@click.option("--exclude", default=None, type=click.Path(exists=True, dir_okay=False),
              help="CSV with a file_name column (e.g. augkit audit's audit.csv): leave those images out (only rows "
                   "with suspect true when that column exists); counted as 'excluded' in skipped.csv.")
@click.option("--demo-train", default=None, type=click.IntRange(1), help="Synthetic demo: training faces [2000].")
@click.option("--demo-val", default=None, type=click.IntRange(0), help="Synthetic demo: validation faces [300].")
@click.option("--threads", default=None, type=click.IntRange(1), help="torch CPU threads per process.")
@click.option("--quiet", is_flag=True, help="No progress bars or per-epoch lines (the final summary still prints).")
@click.option("--launch-config", default=None, hidden=True, type=click.Path(exists=True, dir_okay=False))
def train(data, fmt, strict, verify, scheme, out, resume, backbone, pretrained, weights, size, preprocess, aug, no_aug,
          epochs, batch_size, lr, weight_decay, optimizer, momentum, scheduler, restart_epochs, warmup, clip, loss,
          trim, val_fraction, val_group, workers, seed, device, amp, channels_last, nproc, time_budget,
          checkpoint_minutes, checkpoint_steps, limit, exclude, demo_train, demo_val, threads, quiet, launch_config,
          lr_find, lr_find_steps, ema, freeze_epochs, tensorboard):
    """Train a landmark regressor (a torchvision backbone + 2K-output head) with augkit's fused
    augmentation; validate in original pixels against the mean-shape baseline; write a run folder
    (config, log.csv/log.jsonl, curves.png, last.pt, best.pt, skipped.csv). With no --data: the
    built-in synthetic demo (resnet18 at 64 px, a few minutes on 2 CPU cores)."""
    from augkit.extras import command_requires
    command_requires("train", "augkit train")
    if tensorboard:
        command_requires("tb", "augkit train --tensorboard")
    if backbone and backbone.startswith("timm/"):
        command_requires("timm", f"augkit train --backbone {backbone}")
    from .loop import TrainConfig, run

    if launch_config:
        with open(launch_config, encoding="utf-8") as f:
            spec = json.load(f)
        cfg, resume = TrainConfig.from_dict(spec["config"]), spec.get("resume")
    else:
        cfg = config_from_params(click.get_current_context().params)
    if nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        sys.exit(_launch(cfg, resume, nproc))
    try:
        run(cfg, resume=resume)
    except (ValueError, OSError, RuntimeError) as e:
        from augkit.config import OutputError
        from augkit.io import ImageReadError
        from .loop import ResumeConflict
        from .model import PretrainedUnavailable
        from .readers import DatasetError
        clear = (DatasetError, PretrainedUnavailable, FileNotFoundError, ResumeConflict, OutputError,
                 ImageReadError)
        if isinstance(e, clear) or type(e) is ValueError:
            raise click.ClickException(str(e)) from None
        raise


def config_from_params(params: dict):
    """The :class:`TrainConfig` of parsed ``augkit train`` options (click's parameter names)."""
    from .loop import TrainConfig
    return TrainConfig.from_dict({**params, "format": params.get("fmt")})


def config_from_args(args, command: str = "augkit train"):
    """The :class:`TrainConfig` that ``augkit train ARGS`` would run with, parsed by the train
    command itself (same options, defaults and checks; a bad option is a click usage error)."""
    ctx = train.make_context(command, list(args))
    return config_from_params(ctx.params), ctx.params


def _launch(cfg, resume, nproc) -> int:
    """Re-run this command under ``torch.distributed.run`` with ``nproc`` processes."""
    import tempfile
    from .run_folder import default_run_dir
    if not resume:
        cfg.out = os.path.abspath(cfg.out or default_run_dir(cfg.data))
    fd, spec = tempfile.mkstemp(prefix="augkit-launch-", suffix=".json")  # not in the run folder: a failed
    try:                                                                 # start leaves no folder behind
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"config": cfg.to_dict(), "resume": resume}, f, indent=1)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "augkit.train.cli", "--launch-config", spec]
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
        return subprocess.call(cmd, env=env)
    finally:
        os.remove(spec)


if __name__ == "__main__":
    train()
