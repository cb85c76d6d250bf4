"""The core's structure: imports run one way, files stay small, steps own their structure.

The import graph is read from the source (ast), lazy imports inside functions included, so an
import circle or an upward import is caught even when it only runs on some code path.
"""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import augkit as ak
from augkit.steps import REGISTRY, Step, step_from_dict

CORE = Path(ak.__file__).resolve().parent
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
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


def _imports(path: Path, modules: set) -> set:
    """The modules ``path`` imports (absolute names), at the top or inside functions."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            # `from pkg import mod` imports the module pkg.mod
            subs = {f"{target}.{a.name}" for a in node.names} & modules
            found.update(subs or {target})
    return found


@pytest.fixture(scope="module")
def graph():
    files = sorted(CORE.rglob("*.py"))
    modules = {_module_name(f) for f in files}
    return {_module_name(f): _imports(f, modules) for f in files}


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


def test_the_core_has_no_import_circle(graph):
    # the package's own __init__ gathers everything; circles through it are not what this checks
    inner = {m: ts - {"augkit"} for m, ts in graph.items()}
    assert _cycles(inner) == [], "import circle(s) among augkit modules"


def test_the_old_circle_compose_schemes_config_is_gone(graph):
    assert "augkit.config" not in graph["augkit.schemes"]
    assert "augkit.compose" not in graph["augkit.config"] or "augkit.config" not in graph["augkit.compose"]


def test_files_stands_at_the_bottom(graph):
    assert not {m for m in graph["augkit.files"] if m.split(".")[0] == "augkit"}


def test_no_import_runs_up_into_train_or_tta(graph):
    # the CLI's lazy command table names those modules as strings: not an import, so allowed
    upward = {(m, t) for m, ts in graph.items() for t in ts
              if t.split(".")[0] in ("train", "tta") or t.startswith(("augkit.train", "augkit.tta"))}
    assert upward == set(), "augkit/ must not import augkit.train or augkit.tta"


def test_the_graph_reader_sees_lazy_and_relative_imports(graph):
    # the reader itself: a function-level import and `from . import mod` are both edges
    assert "augkit.compose" in graph["augkit.config"]
    assert {"augkit.functional", "augkit.geometry"} <= graph["augkit"]
    assert "augkit.symmetry" in graph["augkit.schemes"]  # lazy, inside __getattr__


def test_no_core_file_over_the_line_limit():
    long = {str(f.relative_to(CORE)): n for f in CORE.rglob("*.py")
            if (n := len(f.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"split these files (over {MAX_LINES} lines)"


def test_new_modules_import_without_torch():
    code = ("import sys, augkit.steps, augkit.containers, augkit.geometric, augkit.photometric, augkit.files, "
            "augkit.transforms, augkit.compose, augkit.config; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(("old", "new", "names"), [
    ("augkit.compose", "augkit.containers", ["OneOf", "Sometimes"]),
    ("augkit.compose", "augkit.steps", ["step_from_dict"]),
    ("augkit.transforms", "augkit.steps", ["Step", "GeometricStep", "PhotometricStep", "REGISTRY"]),
    ("augkit.transforms", "augkit.geometric", ["Affine", "HFlip", "RandomCrop", "CenterCrop", "CropBox", "Resize",
                                               "ScaleMinSide", "Pad", "LetterBox"]),
    ("augkit.transforms", "augkit.photometric", ["BrightnessContrast", "Gamma", "Blur", "MotionBlur", "Grayscale",
                                                 "Noise", "JpegQuality", "BlackBars", "Erase"]),
    ("augkit.config", "augkit.files", ["read_yaml", "dump_yaml", "atomic_write_text", "atomic_write_bytes",
                                       "atomic_open", "check_writable", "OutputError"]),
])
def test_moved_names_stay_importable_from_their_old_module(old, new, names):
    import importlib
    a, b = importlib.import_module(old), importlib.import_module(new)
    for name in names:
        assert getattr(a, name) is getattr(b, name), f"{old}.{name}"


# ----------------------------------------------------------------------------- step structure

def test_containers_list_their_children_and_leaves_have_none():
    flip, resize = ak.HFlip(), ak.Resize(8, 8)
    one = ak.OneOf([flip, resize])
    some = ak.Sometimes(one)
    pipe = ak.Compose([some, resize])
    assert pipe.children() == (some, resize)
    assert some.children() == (one,)
    assert one.children() == (flip, resize)
    assert flip.children() == () and resize.children() == ()


def test_may_flip_is_asked_of_the_structure_at_any_depth():
    deep = ak.Compose([ak.Resize(8, 8), ak.Sometimes(ak.OneOf([ak.Blur(), ak.Compose([ak.HFlip(p=0.0)])]))])
    assert deep.may_flip and deep.can_flip  # a flip that may never run still needs a scheme
    assert not ak.Compose([ak.OneOf([ak.Blur(), ak.Resize(4, 4)])]).may_flip
    with pytest.raises(ValueError, match="scheme"):
        deep(np.zeros((8, 8, 3), np.uint8), np.zeros((68, 2)), rng=np.random.default_rng(0))


@pytest.mark.parametrize(("steps", "expected"), [
    ([], 0),
    ([ak.HFlip()], 1),
    ([ak.HFlip(), ak.Affine(rotate=5), ak.HFlip()], 2),
    ([ak.HFlip(p=0.0), ak.Resize(6, 6)], 0),
    ([ak.Sometimes(ak.HFlip(), p=1.0), ak.OneOf([ak.Compose([ak.HFlip()])])], 2),
    ([ak.Sometimes(ak.HFlip(), p=0.0), ak.OneOf([ak.HFlip()], p=0.0)], 0),
])
def test_fixed_flips_agrees_with_a_real_call(steps, expected):
    pipe = ak.Compose(steps, points_unordered=True)
    assert pipe.fixed_flips() == expected
    assert pipe(np.zeros((6, 6, 3), np.uint8)).record["flips"] == expected


@pytest.mark.parametrize("step", [ak.HFlip(p=0.5), ak.OneOf([ak.HFlip(), ak.Blur()]), ak.Affine(rotate=(0, 5))])
def test_fixed_flips_refuses_a_random_step(step):
    with pytest.raises(ValueError, match="random"):
        ak.Compose([step], points_unordered=True).fixed_flips()


def test_view_flips_reads_the_structure_without_running_an_image(monkeypatch):
    from augkit.tta.views import View, preset_views

    views = preset_views("full")
    expected = [v.pipeline(np.zeros((6, 6, 3), np.uint8)).record["flips"] % 2 == 1 for v in views]

    def no_run(*a, **k):
        raise AssertionError("View.flips ran the pipeline")

    monkeypatch.setattr(ak.Compose, "__call__", no_run)
    assert [v.flips for v in views] == expected and sum(expected) == len(views) // 2
    # a box crop cannot run on an image without a box, yet its view still answers
    assert View.from_steps("crop-flip", [ak.CropBox(), ak.HFlip()]).flips
    assert not View.from_steps("crop", [ak.CropBox()]).flips


@pytest.fixture()
def twice():
    """A container written the way a user would add one: one class, nothing else edited."""

    class Twice(Step):
        """Run ``step`` two times in a row."""

        def __init__(self, step, p=1.0):
            super().__init__(p)
            self.step = step

        def children(self):
            return (self.step,)

        @property
        def deterministic(self):
            return self.p in (0.0, 1.0) and (self.p == 0.0 or self.step.deterministic)

        def fixed_flips(self):  # the default counts each child once; this one runs its child twice
            return 0 if self.p == 0.0 else 2 * self.step.fixed_flips()

        def contribute(self, plan, rng, entry):
            if entry is None:
                return [self.step.walk(plan, rng), self.step.walk(plan, rng)]
            return [self.step.walk(plan, rng, e, replay=True) for e in entry]

        @classmethod
        def from_args(cls, args, where):
            return cls(**{**args, "step": step_from_dict(args["step"], f"{where}.step")})

        def to_dict(self):
            return {"type": "Twice", "step": self.step.to_dict()}

    yield Twice
    REGISTRY.pop("Twice", None)  # the registry is global: leave it as it was


def test_a_new_container_needs_no_edit_elsewhere(twice, face):
    image, points = face
    pipe = ak.Compose([twice(ak.HFlip()), twice(ak.Affine(rotate=(-10, 10)))], scheme="ibug68")
    assert "Twice" in REGISTRY and pipe.can_flip and pipe.children()[0].fixed_flips() == 2
    out = pipe(image, points, rng=np.random.default_rng(3))
    assert out.record["flips"] == 2 and len(out.record["steps"][1]) == 2
    np.testing.assert_allclose(out.invert(out.points), points, atol=1e-6)  # the walk fused it into one matrix
    again = ak.Compose.from_dict(pipe.to_dict())  # the dict form round-trips through the registry
    assert type(again.steps[0]).__name__ == "Twice" and again.to_dict() == pipe.to_dict()
    replayed = again.replay(out.record, image, points)
    assert replayed.image.tobytes() == out.image.tobytes()
    np.testing.assert_array_equal(replayed.points, out.points)


def test_unknown_type_names_the_place_and_the_known_types():
    with pytest.raises(ValueError, match=r"pipeline\.steps\[1\]: unknown step type 'Warp'; known: .*Affine.*OneOf"):
        ak.Compose.from_dict({"type": "Compose", "steps": [{"type": "HFlip"}, {"type": "Warp"}]})
    with pytest.raises(ValueError, match=r"pipeline\.steps\[0\]\.step: bad arguments for Blur"):
        ak.Compose.from_dict({"type": "Compose", "steps": [{"type": "Sometimes", "step": {"type": "Blur", "x": 1}}]})
