"""The light CLI (show, scheme check/infer), scheme inference, and the examples."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import augkit as ak
from augkit.cli import main
from augkit.symmetry import infer_pairs, mirror_error

ROOT = Path(__file__).resolve().parents[2]


def test_show_draws_a_grid(ytf68, tmp_path):
    out = tmp_path / "grid.png"
    res = CliRunner().invoke(main, ["show", "--data", str(ytf68 / "train"), "--n", "6", "--size", "64",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    grid = cv2.imread(str(out))
    assert grid.shape == (2 * 68 + 4, 3 * 68 + 4, 3)
    tile = cv2.cvtColor(grid[4:68, 4:68], cv2.COLOR_BGR2RGB).reshape(-1, 3)
    red = np.all(tile == (255, 60, 60), axis=1).sum()
    blue = np.all(tile == (60, 140, 255), axis=1).sum()
    assert red > 0 and blue > 0  # both sides drawn in their own colours


def test_show_with_a_pipeline_file(ytf68, tmp_path):
    ak.save(ak.Compose([ak.HFlip()], scheme="ibug68"), tmp_path / "flip.yaml")
    res = CliRunner().invoke(main, ["show", "--data", str(ytf68 / "train"), "--n", "2", "--size", "48",
                                    "--aug", str(tmp_path / "flip.yaml"), "--out", str(tmp_path / "g.png")])
    assert res.exit_code == 0, res.output
    assert cv2.imread(str(tmp_path / "g.png")) is not None


def test_scheme_check_and_infer_on_real_data(ytf68, tmp_path):
    res = CliRunner().invoke(main, ["scheme", "check", "--data", str(ytf68 / "train")])
    assert res.exit_code == 0, res.output
    assert "pairs look right" in res.output
    res = CliRunner().invoke(main, ["scheme", "infer", "--data", str(ytf68 / "train"), "--norm", "36", "45",
                                    "--out", str(tmp_path / "s.yaml")])
    assert res.exit_code == 0, res.output
    inferred = ak.get_scheme(str(tmp_path / "s.yaml"))
    assert set(inferred.flip_pairs) == set(ak.IBUG68.flip_pairs)
    assert inferred.norm == (36, 45)


def test_infer_pairs_on_a_shuffled_symmetric_shape():
    rng = np.random.default_rng(0)
    half = rng.uniform([0.2, -1], [1.5, 1], (40, 2))
    mid = np.column_stack([np.zeros(7), rng.uniform(-1, 1, 7)])
    shape = np.vstack([half, half * [-1, 1], mid]) + rng.normal(0, 0.01, (87, 2))
    rot = np.deg2rad(8)  # a tilted mirror line is found too
    shape = shape @ np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]]).T
    order = rng.permutation(87)
    shuffled = shape[order]
    where = np.argsort(order)  # original index -> shuffled index
    truth = {tuple(sorted((int(where[i]), int(where[i + 40])))) for i in range(40)}
    pairs, err = infer_pairs(shuffled)
    assert set(pairs) == truth
    assert err < 0.05
    assert mirror_error(shuffled) > 10 * err  # without pairs the mirror is far off


def test_unknown_scheme_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nn_points: 3\nflip_pairs: [[0, 5]]\n")
    with pytest.raises(ValueError, match=r"bad.yaml.*index 5 outside 0..2"):
        ak.get_scheme(str(bad))
    bad.write_text("n_points: 3\nflips: []\n")
    with pytest.raises(ValueError, match="unknown field"):
        ak.get_scheme(str(bad))


@pytest.mark.parametrize("script", ["torch_dataset.py", "albumentations_interop.py"])
def test_examples_run(ytf68, tmp_path, script):
    args = [sys.executable, str(ROOT / "examples" / script), "--data", str(ytf68 / "train")]
    args += ["--n", "16"] if script == "torch_dataset.py" else ["--out", str(tmp_path / "i.png")]
    res = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert ("batch (16, 3, 128, 128)" in res.stdout) if script == "torch_dataset.py" else ("wrote" in res.stdout)


def test_show_without_data_draws_the_synthetic_demo_faces(tmp_path):
    out = tmp_path / "demo.png"
    res = CliRunner().invoke(main, ["show", "--n", "4", "--size", "64", "--out", str(out)])
    assert res.exit_code == 0, res.output
    grid = cv2.imread(str(out))
    assert grid.shape == (2 * 68 + 4, 2 * 68 + 4, 3) and grid[4:68, 4:68].std() > 10


def test_show_draws_each_new_step_from_a_pipeline_yaml(tmp_path):
    """Issue 27's steps written in a pipeline YAML by hand, drawn by `augkit show` (demo faces)."""
    cv2.imwrite(str(tmp_path / "patch.png"), np.full((40, 40, 3), 90, np.uint8))
    (tmp_path / "new.yaml").write_text(f"""
type: Compose
scheme: ibug68
steps:
  - {{type: Perspective, yaw: [-0.2, 0.2], jitter: 0.05}}
  - {{type: Caption, position: landmarks, outline: [0.0, 0.1]}}
  - {{type: Downscale, scale: [0.4, 0.7], p: 0.5}}
  - {{type: Sharpen, amount: 0.5, p: 0.5}}
  - {{type: ColorJitter, hue: [-15, 15]}}
  - {{type: CLAHE, clip_limit: 2.0, grid: 4, p: 0.5}}
  - {{type: CoarseDropout, n: [1, 4], fill: random}}
  - {{type: RandomPatch, source: {str(tmp_path)!r}, area: [0.02, 0.05]}}
""")
    pipe = ak.load(tmp_path / "new.yaml")
    assert [s.to_dict()["type"] for s in pipe.steps][:2] == ["Perspective", "Caption"]
    res = CliRunner().invoke(main, ["show", "--n", "4", "--size", "64", "--aug", str(tmp_path / "new.yaml"),
                                    "--out", str(tmp_path / "new.png")])
    assert res.exit_code == 0, res.output
    grid = cv2.imread(str(tmp_path / "new.png"))
    assert grid.shape == (2 * 68 + 4, 2 * 68 + 4, 3) and grid[4:68, 4:68].std() > 10
