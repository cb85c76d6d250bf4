"""``python -m augkit``: the ``augkit`` command."""

from augkit.cli import entry

entry()
