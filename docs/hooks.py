"""MkDocs hooks for the augkit documentation site (named in ``mkdocs.yml``; not part of the package).

Two things the stock plugins cannot do on their own:

1. **Every public name.** A line ``<!-- public-api: PACKAGE -->`` in a page becomes one
   mkdocstrings block per name in ``PACKAGE.__all__``, in that order. Names the package binds
   itself are documented under the package's path (``augkit.data.read_dataset``); names it loads
   lazily through a module ``__getattr__`` (``augkit.train.run``, ``augkit.tta.predict_to_file``)
   are invisible to a static reader, so they are documented where they are defined, found by
   importing them; a name defined in another documented package gets a link there instead of a
   second copy.
2. **Every command.** The ``augkit`` group names ``train``, ``predict``, ``evaluate``, ``tta`` and
   ``audit`` as strings and imports them when called; mkdocs-click lists a group's registered
   commands only, so the lazy ones are registered (in this process only) before the pages render.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
from pathlib import Path

import mkdocs.plugins

PACKAGES = ("augkit", "augkit.data", "augkit.train", "augkit.tta")   # what the API reference covers

# Per-name mkdocstrings options ("augkit.tta.TTAPredictor": {"option": "value"}); none needed now
BLOCK_OPTIONS: dict = {}

_MARKER = re.compile(r"^<!-- public-api: ([\w.]+) -->$", re.MULTILINE)
# reST roles in docstrings (:class:`X`, :func:`~a.b`) render as plain code on the site
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):(<code>)~?")


@mkdocs.plugins.event_priority(100)          # before mkdocs-click renders the CLI page
def on_config(config):
    _register_lazy_commands()
    return config


# -- every command, for mkdocs-click ----------------------------------------------------------

def _register_lazy_commands() -> None:
    import click

    from augkit.cli import main
    ctx = click.Context(main, info_name="augkit")
    main.commands = {name: main.get_command(ctx, name) for name in main.list_commands(ctx)}


# -- one block per public name ---------------------------------------------------------------

def _bound_names(module) -> set[str]:
    """The names a package's ``__init__`` binds itself (imports, assignments, definitions)."""
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def _owner(path: str) -> str | None:
    """The documented package a dotted path belongs to (the longest match)."""
    found = [p for p in PACKAGES if path == p or path.startswith(p + ".")]
    return max(found, key=len) if found else None


def public_blocks(package: str) -> str:
    """The Markdown for every name in ``package.__all__``."""
    module = importlib.import_module(package)
    bound = _bound_names(module)
    out, lazy = [], []
    for name in module.__all__:
        obj = getattr(module, name)
        routine = inspect.isclass(obj) or inspect.isroutine(obj)
        if inspect.ismodule(obj):
            target = obj.__name__
        elif routine and (name not in bound or importlib.util.find_spec(f"{package}.{name}") is not None):
            # loaded lazily, or named like a submodule (augkit.tta.merge): where it is defined
            target = f"{obj.__module__}.{obj.__qualname__}"
        elif name in bound:
            target = f"{package}.{name}"
        else:
            raise ValueError(f"{package}.{name} is loaded lazily and is neither a class nor a function: "
                             "the API page cannot find where it is defined")
        if name not in bound:
            lazy.append(name)
        home = _owner(obj.__module__) if routine else package
        if home and home != package:
            # a re-export of another documented package's name: link, do not repeat
            public = f"{home}.{name}" if name in getattr(importlib.import_module(home), "__all__", ()) else target
            out.append(f"## `{name}`\n\nThe same object as [`{public}`][{public}], "
                       f"re-exported: `from {package} import {name}`.\n")
            continue
        options = "".join(f"\n      {k}: {v}" for k, v in BLOCK_OPTIONS.get(f"{package}.{name}", {}).items())
        out.append(f"::: {target}" + (f"\n    options:{options}" if options else "") + "\n")
    intro = (f"The {len(module.__all__)} names of `{package}.__all__`, each importable as "
             f"`from {package} import NAME`")
    intro += (f"; {', '.join(f'`{n}`' for n in lazy)} load on first use (the package imports them lazily)."
              if lazy else ".")
    return intro + "\n\n" + "\n".join(out)


def on_page_markdown(markdown, page, config, files):
    return _MARKER.sub(lambda m: public_blocks(m.group(1)), markdown)


def on_page_content(html, page, config, files):
    html = _ROLE.sub(r"\1", html)
    html = html.replace("::</p>", ":</p>")          # a reST literal-block marker ends a paragraph
    # mkdocs-click 0.9 prints click >= 8.3's "no default" sentinel as a default (mkdocs-click PR #95)
    return html.replace("<code>Sentinel.UNSET</code>", "")
