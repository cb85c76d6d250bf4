"""``python -m augkit.cli``: the ``augkit`` command (as ``python -m augkit``)."""

from augkit.cli import entry

entry()
