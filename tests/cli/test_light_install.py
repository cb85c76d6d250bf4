"""A light core install: the core needs numpy, OpenCV, PyYAML and click only; commands that need
an extra say which one to install."""

import ast
import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

WITHOUT_TORCH = textwrap.dedent('''
    import sys
    for name in ("torch", "torchvision", "pandas", "scipy", "matplotlib", "albumentations"):
        sys.modules[name] = None   # as on a core install: importing them fails
    import numpy as np
    import augkit
    img = np.zeros((40, 50, 3), np.uint8)
    res = augkit.Compose([augkit.Affine(rotate=(-10, 10)), augkit.HFlip()], scheme=None,
                         points_unordered=True)(img, np.array([[10.0, 12.0]]), rng=np.random.default_rng(0))
    assert res.image.shape == img.shape
    from augkit.cli import main
    main([*sys.argv[1:]], standalone_mode=True)
''')


@pytest.mark.parametrize("args,words", [
    (["train", "--demo-train", "8"], ["augkit train needs the [train] extra: pip install 'augkit[train]'", "torch"]),
    (["predict", "--run", ".", "--data", ".", "--out", "x.csv"], ["augkit predict needs the [train] extra"]),
    (["tta", "fit", "--run", "."], ["augkit tta fit needs the [train] extra"]),
    # reading a dataset needs no extra: an empty folder is the reader's own error, not a missing extra
    (["show", "--data", ".", "--out", "g.png"], [".: cannot tell the dataset format"]),
    (["scheme", "check", "--data", "."], [".: cannot tell the dataset format"]),
    (["scheme", "infer", "--data", ".", "--out", "s.yaml"], ["augkit scheme infer needs the [train] extra"]),
])
def test_missing_extra_names_the_extra(tmp_path, args, words):
    r = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, *args], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert all(w in r.stderr for w in words), r.stderr
    assert "Traceback" not in r.stderr


def test_show_and_scheme_check_read_a_dataset_on_a_core_install(tmp_path):
    import cv2
    import numpy as np
    rng = np.random.default_rng(0)
    rows = ["file_name," + ",".join(f"x{i},y{i}" for i in range(68))]
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((60, 60, 3), 90, np.uint8))
        pts = rng.uniform(10, 50, (68, 2))
        rows.append(f"{i}.png," + ",".join(f"{v:.2f}" for v in pts.ravel()))
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    for args in (["show", "--data", "labels.csv", "--n", "3", "--out", "g.png"], ["scheme", "check", "--data", "labels.csv"]):
        r = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, *args], capture_output=True, text=True, timeout=120,
                           cwd=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "g.png").stat().st_size > 0


def test_show_py_does_not_import_augkit_train():
    tree = ast.parse((ROOT / "augkit" / "show.py").read_text())
    names = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)] + \
        [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [n for n in names if n and n.startswith(("augkit.train", "torch", "pandas"))], names


def test_core_dependencies_are_light():
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {d.split(">")[0].split("<")[0].split("=")[0].strip().lower() for d in project["dependencies"]}
    assert core == {"numpy", "opencv-python-headless", "pyyaml", "click"}
    extras = project["optional-dependencies"]
    assert any(d.startswith("torch>=2.3") for d in extras["train"])  # torch.amp.GradScaler("cuda")
    assert set(extras["train"]) | set(extras["albu"]) | set(extras["tb"]) | set(extras["timm"]) | set(extras["onnx"]) \
        == set(extras["all"])
    from augkit.extras import EXTRAS
    assert set(EXTRAS) <= set(extras)  # every extra a command may name exists


def _online() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
def test_fresh_venv_core_install_has_no_torch(tmp_path):
    """`pip install .` into a new virtual environment (downloads numpy and OpenCV: slow)."""
    if not _online():
        pytest.skip("no network: pip cannot fetch the core dependencies")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", str(ROOT)], capture_output=True, text=True,
                       timeout=1200)
    if r.returncode != 0 and ("Could not fetch" in r.stderr or "NewConnectionError" in r.stderr):
        pytest.skip("pip could not reach the package index")
    assert r.returncode == 0, r.stderr[-3000:]
    check = ("import importlib.util as u, numpy as np, augkit; "
             "print([m for m in ('torch', 'torchvision', 'albumentations', 'pandas') if u.find_spec(m)]); "
             "r = augkit.Compose([augkit.Affine(rotate=(-10, 10))])(np.zeros((30, 30, 3), np.uint8), "
             "np.array([[5.0, 5.0]]), rng=np.random.default_rng(0)); print(r.image.shape)")
    r = subprocess.run([str(py), "-c", check], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.splitlines() == ["[]", "(30, 30, 3)"], r.stdout + r.stderr
    r = subprocess.run([str(venv / "bin" / "augkit"), "train"], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 1 and "augkit train needs the [train] extra: pip install 'augkit[train]'" in r.stderr
    assert not (tmp_path / "runs").exists()
    # the maintained albumentations installs beside augkit (AlbumentationsX 2.4+ needs OpenCV 5)
    r = subprocess.run([str(py), "-m", "pip", "install", "--dry-run", "-q", "--report", str(tmp_path / "x.json"),
                        str(ROOT), "albumentationsx[headless]"], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    names = {i["metadata"]["name"].lower() for i in json.loads((tmp_path / "x.json").read_text())["install"]}
    assert {"augkit", "albumentationsx"} <= names and "opencv-python" not in names
