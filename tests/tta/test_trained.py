"""TTA with a real checkpoint from `augkit train` (a tiny model trained once per session on a few
ytf68 images; skipped when ytf68 or augkit.train is missing)."""

import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from augkit.cli import main


@pytest.fixture(scope="session")
def checkpoint(ytf68, tmp_path_factory):
    pytest.importorskip("torch")
    try:
        import augkit.models.checkpoint  # noqa: F401
        import augkit.cli.train  # noqa: F401
    except ImportError as e:
        pytest.skip(f"augkit.train is not available: {e}")
    run = tmp_path_factory.mktemp("tta_run")
    cmd = [sys.executable, "-m", "augkit.cli", "train", "--data", str(ytf68 / "train"), "--limit", "256",
           "--backbone", "tiny", "--size", "48", "--epochs", "3", "--out", str(run), "--quiet", "--workers", "0",
           "--threads", "2", "--seed", "0"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    return run / "best.pt"


@pytest.fixture(scope="session")
def ytf68_test_subset(ytf68):
    from augkit.data import read_dataset
    table = read_dataset(ytf68 / "test")
    idx = np.random.default_rng(0).choice(len(table.files), 150, replace=False)
    return [table.files[i] for i in idx], table.points[idx]


def test_flip_does_not_get_worse_and_a_wrong_swap_does(checkpoint, ytf68_test_subset):
    from augkit import metrics
    from augkit.schemes import Scheme
    from augkit.models.checkpoint import load_model
    from augkit.tta import TTAPredictor
    files, truth = ytf68_test_subset
    model = load_model(checkpoint)
    none = TTAPredictor(model, "none").predict(files).points
    flip = TTAPredictor(model, "flip", max_batch=128).predict(files).points
    noswap = Scheme("noswap", 68, (), norm=(36, 45))
    wrong = TTAPredictor(model, "flip", scheme=noswap).predict(files).points
    mse = {k: metrics.mse(p, truth) for k, p in (("none", none), ("flip", flip), ("wrong", wrong))}
    assert mse["flip"] <= 1.02 * mse["none"], mse
    assert mse["wrong"] > 1.5 * mse["flip"], mse


def test_batched_equals_one_view_at_a_time_on_a_real_model(checkpoint, ytf68_test_subset):
    from augkit.models.checkpoint import load_model
    from augkit.tta import TTAPredictor
    files = ytf68_test_subset[0][:12]
    model = load_model(checkpoint)
    a = TTAPredictor(model, "flip-rot", max_batch=50).predict_members(files).points
    b = TTAPredictor(model, "flip-rot", max_batch=5, stacked=False).predict_members(files).points
    assert np.abs(a - b).max() < 1e-4


def test_cli_submission_on_ytf68_test(checkpoint, ytf68, tmp_path):
    out = tmp_path / "submission.csv"
    res = CliRunner().invoke(main, ["predict", "--checkpoint", str(checkpoint), "--data", str(ytf68 / "test"),
                                    "--tta", "flip", "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    lines = out.read_text().splitlines()
    tp = (ytf68 / "test" / "test_points.csv").read_text().splitlines()[1:]
    assert lines[0] == "file_name," + ",".join(f"Point_M{i}_{a}" for i in range(30) for a in "XY")
    assert [line.split(",")[0] for line in lines[1:]] == [t.split("\t")[0] for t in tp]
    assert all(v.lstrip("-").isdigit() for line in lines[1:] for v in line.split(",")[1:])


def test_cli_fit_and_evaluate_with_a_real_checkpoint(checkpoint, ytf68, tmp_path):
    spec = tmp_path / "fitted.yaml"
    # a few TRAIN images stand in for validation data here (the test is about the mechanics)
    res = CliRunner().invoke(main, ["tta", "fit", "--checkpoint", str(checkpoint), "--data", str(ytf68 / "train"),
                                    "--tta", "flip-rot", "--limit", "60", "--out", str(spec), "--folds", "3"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(checkpoint), "--data", str(ytf68 / "test"),
                                    "--tta", "flip", "--tta", str(spec), "--limit", "60",
                                    "--png", str(tmp_path / "w.png")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "fitted.yaml" in res.output and (tmp_path / "w.png").is_file()
