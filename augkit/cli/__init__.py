"""The ``augkit`` command line: the only package that imports click.

Every command is a thin layer over a library function: parse, call, print. The commands live in
``core`` (``show``, ``scheme``), ``train``, ``predict`` (``predict``, ``evaluate``, ``tta fit``,
``export``) and ``audit``; all but ``core`` are imported only when called, so ``augkit --help`` and
``augkit show`` never import torch.

The error contract is kept here, in one place (:class:`Command`): an
:class:`~augkit.errors.AugkitError` (a bad file, row, field or parameter, a missing extra, an
output that cannot be written) and an ``OSError`` from the file system become one line on stderr
and exit code 1 (2 for :class:`~augkit.errors.UsageError`, as click gives a bad option); anything
else is a bug and keeps its traceback. SIGTERM / SIGUSR1 stop a command cleanly (:func:`entry`).
"""

from __future__ import annotations

import importlib

import click

from augkit.errors import AugkitError

__all__ = ["Command", "Group", "entry", "main"]


class _Failed(click.ClickException):
    """An :class:`AugkitError` or ``OSError`` as click prints it: ``Error: MESSAGE``, exit 1."""


class _BadUsage(_Failed):
    """A :class:`~augkit.errors.UsageError`: exit 2, as click gives a bad option."""

    exit_code = 2


def _failed(message: str, exit_code: int) -> click.ClickException:
    return (_BadUsage if exit_code == 2 else _Failed)(message)


def _message(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[-1] if text else type(e).__name__


class Command(click.Command):
    """A click command under augkit's error contract (see the module's docstring)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except AugkitError as e:
            raise _failed(_message(e), e.exit_code) from None
        except OSError as e:
            raise _failed(_message(e), 1) from None


class Group(click.Group):
    """A click group whose subcommands (declared with ``@group.command()``) are :class:`Command`\\ s."""

    command_class = Command
    group_class = type   # subgroups are of this class too


# command name -> (module, attribute); imported on first use
LAZY_COMMANDS = {
    "train": ("augkit.cli.train", "train"),
    "predict": ("augkit.cli.predict", "predict"),
    "evaluate": ("augkit.cli.predict", "evaluate"),
    "tta": ("augkit.cli.predict", "tta"),
    "export": ("augkit.cli.predict", "export"),
    "audit": ("augkit.cli.audit", "audit"),
}


class _Root(Group):
    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx, name):
        if name in LAZY_COMMANDS:
            module, attr = LAZY_COMMANDS[name]
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=_Root)
@click.version_option(package_name="augkit")
def main():
    """augkit: invertible augmentations and TTA for landmark regression."""


def entry() -> None:
    """The ``augkit`` console script: :func:`main` stopped cleanly by SIGTERM / SIGUSR1 (no temporary
    file left, earlier outputs intact, exit 143 / 138: :mod:`augkit.signals`)."""
    from augkit.signals import stop_cleanly
    with stop_cleanly(process_exit=True):
        main()


def _add_light_commands() -> None:
    from .core import scheme, show
    main.add_command(show)
    main.add_command(scheme)


_add_light_commands()

if __name__ == "__main__":
    entry()
