"""augkit.audit: find the labels most likely wrong.

- :mod:`augkit.audit.score` (numpy only): :class:`LabelAuditor` scores each label against an
  out-of-fold prediction and its uncertainty (the TTA spread, or the model's own sigma) and names
  what is wrong (swap, shift, scale, mismatch, points, ok);
- :mod:`augkit.audit.folds` (torch): :func:`run_audit` trains the fold models with
  :mod:`augkit.train`, predicts each held-out fold with :mod:`augkit.tta`, scores every image and
  writes ``audit.csv`` / ``audit.png``; :func:`write_fixed` re-indexes the rows diagnosed ``swap``.

The package sits above ``augkit.train`` and ``augkit.tta``, which import nothing from it.
Importing it loads numpy only.

    from augkit.audit import LabelAuditor, run_audit
"""

from __future__ import annotations

import importlib

from .score import DEFAULT_THRESHOLD, KINDS, STATS, AuditScore, LabelAuditor, pose_spread

__all__ = ["LabelAuditor", "AuditScore", "pose_spread", "STATS", "KINDS", "DEFAULT_THRESHOLD", "run_audit",
           "write_fixed", "AuditResult"]

_LAZY = {"run_audit": "folds", "write_fixed": "folds", "AuditResult": "folds"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
