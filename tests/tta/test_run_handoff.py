"""The run folder is the hand-off: train -> tta fit --run -> predict --run / evaluate --run on a
small ytf68 slice, with no folder made by hand; several --run make an ensemble."""

import json

import numpy as np
from click.testing import CliRunner

from augkit.cli import main
from augkit.tta import load_spec

FAST = ["--backbone", "tiny", "--size", "32", "--batch-size", "8", "--workers", "0", "--quiet", "--threads", "1",
        "--epochs", "1", "--val-group", "person", "--val-fraction", "0.3"]


def _cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r.output


def test_train_then_tta_fit_run_then_predict_run(tmp_path, ytf68):
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    _cli("train", "--data", ytf68 / "train", "--limit", "48", *FAST, "--out", run_a)
    split = json.loads((run_a / "split.json").read_text())
    out = _cli("tta", "fit", "--run", run_a, "--tta", "flip", "--folds", "2")
    assert f"{len(split['val'])} validation images" in out and (run_a / "tta.yaml").is_file()
    assert "wrote " + str(run_a / "tta.yaml") in out
    val_rows = (run_a / "val.csv").read_text().splitlines()[1:]
    assert sorted(r.split(",")[0].rsplit("/", 1)[-1] for r in val_rows) == sorted(split["val"])

    one = tmp_path / "one"
    (one / "images").mkdir(parents=True)
    for name in sorted((ytf68 / "test" / "images").iterdir())[:6]:
        (one / "images" / name.name).symlink_to(name)
    out = _cli("predict", "--run", run_a, "--data", one, "--out", tmp_path / "p.csv")
    assert "flip-fitted" in out and "6 images" in out  # best.pt with the run's own tta.yaml
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert len(rows) == 7

    _cli("train", "--data", ytf68 / "train", "--limit", "48", "--seed", "1", *FAST, "--out", run_b)
    out = _cli("predict", "--run", run_a, "--run", run_b, "--tta", "flip", "--data", one,
               "--out", tmp_path / "ens.csv")
    assert "4 member(s)" in out  # 2 models x 2 views
    a = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1, usecols=range(1, 137))
    e = np.loadtxt(tmp_path / "ens.csv", delimiter=",", skiprows=1, usecols=range(1, 137))
    assert a.shape == e.shape and np.isfinite(e).all() and not np.allclose(a, e)

    # no --tta: run a's tta.yaml was fitted for one model, so the ensemble takes its views unweighted
    out = _cli("predict", "--run", run_a, "--run", run_b, "--data", one, "--out", tmp_path / "ens2.csv")
    n_views = len(load_spec(run_a / "tta.yaml").views)   # 1 when no TTA beat the identity view on validation
    assert "plain weights" in out and f"{2 * n_views} member(s)" in out
    assert np.isfinite(np.loadtxt(tmp_path / "ens2.csv", delimiter=",", skiprows=1, usecols=range(1, 137))).all()

    out = _cli("evaluate", "--run", run_a, "--data", run_a / "val.csv", "--png", tmp_path / "w.png")
    assert "flip-fitted" in out or "tta.yaml" in out
    assert (tmp_path / "w.png").stat().st_size > 0

    # the run's data moved away: one clear line, no traceback
    split["data"] = str(tmp_path / "moved")
    (run_a / "split.json").write_text(json.dumps(split))
    r = CliRunner().invoke(main, ["tta", "fit", "--run", str(run_a), "--tta", "flip"])
    assert r.exit_code == 1 and "the run's data cannot be read any more" in r.output
    assert isinstance(r.exception, SystemExit), r.exception   # a ClickException, not an uncaught error


def test_run_option_errors_are_clear(tmp_path):
    r = CliRunner().invoke(main, ["tta", "fit"])
    assert r.exit_code != 0 and "--run DIR" in r.output
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(main, ["predict", "--run", str(tmp_path / "empty"), "--data", str(tmp_path),
                                  "--out", str(tmp_path / "x.csv")])
    assert r.exit_code != 0 and "no best.pt nor last.pt" in r.output
