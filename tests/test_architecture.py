"""The package's architecture, read from the source (ast): imports run one way, click stays in the
command line, ``train`` and ``tta`` do not know each other, nothing imports another module's
private names, and one error contract.

The import graph counts every import that can run: at the top, inside functions (lazy ones) and
relative ones; only ``if TYPE_CHECKING:`` blocks are left out.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import augkit

PACKAGE = Path(augkit.__file__).resolve().parent
ROOT = PACKAGE.parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree):
    """Every node except those under ``if TYPE_CHECKING:`` (never run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _target(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = name.split(".") if is_package else name.split(".")[:-1]
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path, modules: set):
    """``(module imported, names taken from it)`` for every import in ``path``."""
    name = _module_name(path)
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, ()
        elif isinstance(node, ast.ImportFrom):
            target = _target(node, name, path.name == "__init__.py")
            names = [a.name for a in node.names]
            subs = {f"{target}.{n}" for n in names} & modules   # `from pkg import mod` imports pkg.mod
            for sub in subs:
                yield sub, ()
            rest = tuple(n for n in names if f"{target}.{n}" not in modules)
            if rest or not subs:
                yield target, rest


@pytest.fixture(scope="module")
def imports():
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(f) for f in files}
    return {_module_name(f): list(_imports(f, modules)) for f in files}


@pytest.fixture(scope="module")
def graph(imports):
    return {m: {t for t, _ in ts} for m, ts in imports.items()}


def _cycles(graph):
    """Strongly connected groups of more than one module (or a module importing itself)."""
    edges = {m: {t for t in ts if t in graph} for m, ts in graph.items()}
    index, low, on_stack, stack, out = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in edges[v]:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _package(module: str) -> str:
    """The sub-package a module belongs to (``augkit.train.loop`` -> ``augkit.train``); a top-level
    module of augkit is its own."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


# ----------------------------------------------------------------------------------- the graph

def test_the_graph_reader_sees_lazy_relative_and_package_imports(graph):
    assert "augkit.compose" in graph["augkit.config"]                 # relative, at the top
    assert {"augkit.functional", "augkit.geometry"} <= graph["augkit"]  # `from . import mod`
    assert "augkit.schemes" in graph["augkit.symmetry"]                # lazy, inside a function
    assert "augkit.tta.predictor" in graph["augkit.audit.folds"]       # absolute, inside a function


def test_no_import_circle_between_modules(graph):
    # a package's own __init__ gathers its modules; circles through it are not what this checks
    inner = {m: {t for t in ts if t not in ("augkit", _package(m)) or t == m} for m, ts in graph.items()}
    assert _cycles(inner) == [], "import circle(s) among augkit modules"


def test_no_import_circle_between_packages(graph):
    packages = {}
    for m, ts in graph.items():
        packages.setdefault(_package(m), set()).update(
            _package(t) for t in ts if t.startswith("augkit.") and _package(t) != _package(m))
    assert _cycles(packages) == [], "import circle(s) among augkit's packages and top-level modules"


def test_train_and_tta_do_not_import_each_other(graph):
    across = sorted((m, t) for m, ts in graph.items() for t in ts
                    if (_in(m, "augkit.train") and _in(t, "augkit.tta"))
                    or (_in(m, "augkit.tta") and _in(t, "augkit.train")))
    assert across == [], "augkit.train and augkit.tta stand side by side on augkit.models"


@pytest.mark.parametrize(("lower", "upper"), [
    ("augkit.data", "augkit.train"), ("augkit.data", "augkit.tta"), ("augkit.data", "augkit.models"),
    ("augkit.models", "augkit.train"), ("augkit.models", "augkit.tta"), ("augkit.models", "augkit.run_folder"),
    ("augkit.train", "augkit.audit"), ("augkit.tta", "augkit.audit"),
    ("augkit.train", "augkit.cli"), ("augkit.tta", "augkit.cli"), ("augkit.audit", "augkit.cli"),
    ("augkit.data", "augkit.cli"), ("augkit.models", "augkit.cli"),
])
def test_imports_run_one_way(graph, lower, upper):
    upward = sorted((m, t) for m, ts in graph.items() for t in ts if _in(m, lower) and _in(t, upper))
    assert upward == [], f"{lower} must not import {upper}"


def test_the_core_imports_none_of_the_layers_above_it(graph):
    layers = ("augkit.data", "augkit.models", "augkit.train", "augkit.tta", "augkit.audit", "augkit.cli",
              "augkit.run_folder")
    core = {m for m in graph if m.count(".") == 1 and not m.startswith(layers)} - {"augkit.__main__"}
    upward = sorted((m, t) for m in core for t in graph[m] if t.startswith(layers))
    assert upward == [], "the augmentation core (augkit/*.py) stands below every layer"


def test_files_errors_and_signals_stand_at_the_bottom(graph):
    assert not {t for t in graph["augkit.errors"] if t.startswith("augkit")}
    assert not {t for t in graph["augkit.signals"] if t.startswith("augkit")}
    assert {t for t in graph["augkit.files"] if t.startswith("augkit")} <= {"augkit.errors", "augkit.signals"}


def test_click_is_imported_by_the_command_line_only(graph):
    users = sorted(m for m, ts in graph.items() if "click" in ts or any(t.startswith("click.") for t in ts))
    assert users and all(_in(m, "augkit.cli") for m in users), [m for m in users if not _in(m, "augkit.cli")]


def test_no_module_imports_a_private_name_of_another(imports):
    private = sorted((m, t, n) for m, found in imports.items() for t, names in found for n in names
                     if t.startswith("augkit") and t != m and n.startswith("_") and not n.startswith("__"))
    assert private == [], "make the name public in its module, or move the code that needs it there"


# ------------------------------------------------------------------------------ the error contract

def test_every_error_class_of_the_library_is_an_augkit_error():
    from augkit.errors import AugkitError
    classes = []
    for f in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name.endswith(("Error", "Unavailable", "Extra", "Exists",
                                                                      "Locked", "Changed", "Conflict")):
                classes.append((_module_name(f), node.name))
    assert len(classes) >= 10
    import importlib
    for module, name in classes:
        cls = getattr(importlib.import_module(module), name)
        assert issubclass(cls, AugkitError), f"{module}.{name}"


def test_the_library_makes_no_bare_value_error():
    bare = [f"{_module_name(f)}:{node.lineno}" for f in sorted(PACKAGE.rglob("*.py"))
            for node in ast.walk(ast.parse(f.read_text(encoding="utf-8")))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "ValueError"]
    assert bare == [], "raise augkit.errors.InputError (a ValueError) with a message naming the place"


def test_one_place_maps_errors_to_exit_codes():
    """Only augkit.cli's Command turns exceptions into exit codes: no command module catches an
    AugkitError, ValueError or OSError to re-raise it as a click error."""
    offenders = []
    for f in sorted((PACKAGE / "cli").glob("*.py")):
        if f.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                caught = ast.unparse(node.type)
                raises = [ast.unparse(r.exc) for r in ast.walk(node) if isinstance(r, ast.Raise) and r.exc]
                if any(w in caught for w in ("ValueError", "OSError", "AugkitError")) and \
                        any("ClickException" in r for r in raises):
                    offenders.append(f"{f.name}:{node.lineno}")
    assert offenders == []


def test_import_augkit_and_its_packages_load_no_torch_and_no_click():
    code = ("import sys, augkit, augkit.data, augkit.models, augkit.train, augkit.tta, augkit.audit, augkit.run_folder; "
            "print('torch' in sys.modules, 'click' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
