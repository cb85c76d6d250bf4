"""The library runners behind `augkit predict`, `augkit evaluate` and `augkit tta fit`: a Python
user gets what the command line writes; progress off a terminal; the newcomer seams (a run without
tta.yaml, a demo run given to `tta fit`, the mean-shape row, the --out format rule)."""

import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import BLOBS4, BlobModel, FixedModel, blob_set, write_blob_dataset

import augkit as ak
from augkit.tta import runners
from augkit import geometry, metrics
from augkit.cli import main
from augkit.presets import preprocess_steps
from augkit.tta import (EvalReport, FitReport, PredictSummary, Progress, RunError, evaluate_tta, fit_tta,
                        get_spec, load_spec, predict_to_file, save_spec, with_weights)
from augkit.tta.evaluate import evaluate_settings
from augkit.tta.evaluate import MeanShapeBaseline, report_lines


def _model():
    return BlobModel(ak.Compose(preprocess_steps(96, "letterbox")))


@pytest.fixture
def fake_models(monkeypatch):
    def load(paths, device="cpu"):
        return [_model() for _ in paths]
    monkeypatch.setattr(runners, "load_models", load)


@pytest.fixture
def blobs(tmp_path):
    return blob_set(tmp_path, seed=3)


def _cli(args, code=0):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == code, res.output
    return res.output


# ------------------------------------------------------------------------------ library == CLI

def test_predict_to_file_writes_what_the_command_writes(blobs, fake_models, tmp_path):
    folder, names, _, ck = blobs
    lib, cli = tmp_path / "lib.csv", tmp_path / "cli.csv"
    s = predict_to_file([_model()], folder, lib, tta="flip")
    _cli(["predict", "--checkpoint", ck, "--data", folder, "--tta", "flip", "--out", cli, "--workers", "0"])
    assert lib.read_bytes() == cli.read_bytes()
    assert isinstance(s, PredictSummary) and (s.fmt, s.rows, s.ok, s.n_images) == ("submission", 10, 10, 10)
    assert s.members == 2 and s.errors == [] and s.missing == []
    js = tmp_path / "all.json"
    s = predict_to_file([_model()], folder / "images", js, tta="none", uncertainty=True)
    d = json.loads(js.read_text())
    assert s.fmt == "json" and [im["file_name"] for im in d["images"]] == sorted(names)
    # a list of image paths and arrays: the same points as from the folder
    from augkit.io import read_image
    first = sorted((folder / "images").iterdir())[:2]
    listed = tmp_path / "listed.json"
    predict_to_file([_model()], [first[0], read_image(str(first[1]))], listed, tta="none", uncertainty=True)
    got = json.loads(listed.read_text())["images"]
    assert [im["file_name"] for im in got] == [first[0].name, "#1"]
    assert [im["points"] for im in got] == [im["points"] for im in d["images"][:2]]


def test_runner_errors_are_one_line(blobs, tmp_path):
    folder, *_ = blobs
    with pytest.raises(RunError, match=r"^.*nowhere: no such file or folder$"):
        predict_to_file([_model()], tmp_path / "nowhere", tmp_path / "o.csv")
    with pytest.raises(RunError, match="needs a test_points.csv"):
        predict_to_file([_model()], folder / "images", tmp_path / "o.csv", fmt="submission")
    five = FixedModel(np.zeros((5, 2)))
    five.n_points = 5
    with pytest.raises(RunError, match="the labels have 4 points per image, the checkpoint"):
        fit_tta([five], folder, tta="none")


def test_evaluate_tta_is_the_streaming_face_of_evaluate_settings(blobs, tmp_path):
    folder, *_ = blobs
    report = evaluate_tta([_model()], folder, tta=["flip", "full"], n_worst=3, png=tmp_path / "w.png",
                          json_out=tmp_path / "m.json")
    assert isinstance(report, EvalReport) and report.labels == ["none", "flip", "full"]
    from augkit.data import read_dataset
    table = read_dataset(folder)
    mem, _ = evaluate_settings([_model()], [("none", "none"), ("flip", "flip"), ("full", "full")],
                               list(table.files), table.points)
    for streamed, inmem in zip(report.results, mem):
        for key in ("mse", "nme", "fr", "members", "n_images"):
            assert streamed[key] == pytest.approx(inmem.metrics[key], rel=1e-9)
    assert (tmp_path / "w.png").read_bytes()[:4] == b"\x89PNG" and report.png_label == report.labels[report.best]
    assert json.loads((tmp_path / "m.json").read_text())["mean_shape"]["source"] == "labels"


def test_fit_tta_matches_the_command_and_returns_its_report(blobs, fake_models, tmp_path):
    folder, _, _, ck = blobs
    lib, cli = tmp_path / "lib.yaml", tmp_path / "cli.yaml"
    rep = fit_tta([_model()], folder, tta="flip-rot", folds=3, out=lib)
    out = _cli(["tta", "fit", "--checkpoint", ck, "--data", folder, "--tta", "flip-rot", "--out", cli,
                "--folds", "3", "--workers", "0"])
    assert isinstance(rep, FitReport) and rep.n_images == 10 and len(rep.member_names) == 6
    np.testing.assert_allclose(load_spec(lib).weights, load_spec(cli).weights, rtol=1e-12)
    assert rep.identity_view == 0 and rep.used in ("per_view", "per_landmark")
    assert "plain average" in out and f"wrote {cli}" in out


# ------------------------------------------------------------------------------------ progress

def test_progress_off_a_terminal_prints_a_line_every_five_percent_with_an_eta():
    now = [0.0]
    buf = io.StringIO()
    bar = Progress(200, "predict", file=buf, clock=lambda: now[0])
    for _ in range(200):
        now[0] += 0.5
        bar.update(1)
    bar.close()
    lines = buf.getvalue().splitlines()
    assert len(lines) == 20                          # 5%, 10%, ... 100%, nothing twice
    assert lines[0] == "predict: 10/200 images (5%), 0:05 elapsed, ETA 1:35"
    assert lines[-1] == "predict: 200/200 images (100%), 1:40 elapsed, ETA 0:00"


def test_progress_also_prints_every_n_seconds_and_draws_a_bar_on_a_terminal():
    now = [0.0]
    buf = io.StringIO()
    bar = Progress(10_000, "fit", file=buf, every_s=30, clock=lambda: now[0])
    now[0] = 31.0
    bar.update(3)                                    # 0.03%: far below 5%, but 31 s passed; ETA = 9997 / (3 / 31 s)
    assert buf.getvalue() == "fit: 3/10000 images (0%), 0:31 elapsed, ETA 28:41:42\n"

    class Tty(io.StringIO):
        def isatty(self):
            return True
    tty = Tty()
    with Progress(5, "predict", file=tty) as bar:
        bar.update(5)
    drawn = tty.getvalue()
    assert bar._bar is not None and "\r" in drawn and "|" in drawn and "images (" not in drawn   # a bar, no lines


def test_predict_prints_progress_lines_when_stderr_is_not_a_terminal(blobs, fake_models, tmp_path):
    folder, _, _, ck = blobs
    out = _cli(["predict", "--checkpoint", ck, "--data", folder, "--out", tmp_path / "s.csv", "--workers", "0"])
    assert "predict: 10/10 images (100%)" in out and "ETA 0:00" in out


# -------------------------------------------------------------------------------------- seams

def test_the_out_format_rule_is_the_one_the_help_states(blobs, fake_models, tmp_path):
    folder, _, _, ck = blobs
    base = ["predict", "--checkpoint", ck, "--data", folder]
    out = _cli(base + ["--out", tmp_path / "sub.txt"], code=2)          # a bad option: exit 2
    assert "sub.txt: cannot tell the format from the extension '.txt'" in out
    assert not (tmp_path / "sub.txt").exists()
    _cli(base + ["--out", tmp_path / "sub.txt", "--format", "submission"])
    assert (tmp_path / "sub.txt").read_text().startswith("file_name,Point_M0_X")
    _cli(base + ["--out", tmp_path / "sub.csv"])
    assert (tmp_path / "sub.csv").read_text().startswith("file_name,Point_M0_X")
    _cli(["predict", "--checkpoint", ck, "--data", folder / "images", "--out", tmp_path / "all.csv"])
    assert (tmp_path / "all.csv").read_text().startswith("file_name,Point_0_X")
    help_text = " ".join(_cli(["predict", "--help"]).split())
    assert ".csv gives the submission when --data has test_points.csv" in help_text
    assert "another extension needs --format" in help_text


def test_predict_run_says_which_tta_it_uses_and_why(blobs, fake_models, tmp_path):
    folder, _, _, _ = blobs
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"stand-in")
    out = _cli(["predict", "--run", run, "--data", folder, "--out", tmp_path / "a.csv"])
    assert f"--run {run} has no tta.yaml" in out and "predicting with --tta none (no TTA)" in out
    save_spec(get_spec("flip"), run / "tta.yaml")
    out = _cli(["predict", "--run", run, "--data", folder, "--out", tmp_path / "b.csv"])
    assert f"TTA from {run / 'tta.yaml'}" in out and "2 member(s)" in out
    out = _cli(["predict", "--run", run, "--data", folder, "--tta", "none", "--out", tmp_path / "c.csv"])
    assert "tta.yaml" not in out and "1 member(s)" in out
    save_spec(with_weights(get_spec("flip"), np.array([0.75, 0.25]), models=["best.pt"], name="flip-fitted"),
              run / "tta.yaml")
    out = _cli(["predict", "--run", run, "--run", run, "--data", folder, "--out", tmp_path / "d.csv"])
    assert f"TTA from {run / 'tta.yaml'} (the run's views, with plain weights" in out and "4 member(s)" in out


def test_tta_fit_on_a_demo_run_says_it_has_no_image_files(tmp_path, fake_models):
    run = tmp_path / "demo"
    run.mkdir()
    (run / "best.pt").write_bytes(b"stand-in")
    # what `augkit train` without --data writes (train/builders.py: the demo's split)
    split = {"data": None, "how": "synthetic demo faces (seed 0): the first 8 train, the next 4 validate",
             "train": [f"synthetic_{i:05d}" for i in range(8)], "val": [f"synthetic_{i:05d}" for i in range(8, 12)]}
    (run / "split.json").write_text(json.dumps(split))
    res = CliRunner().invoke(main, ["tta", "fit", "--run", str(run)])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)
    msg = [line for line in res.output.splitlines() if line.strip()]
    assert len(msg) == 1 and "synthetic demo faces" in msg[0] and "no validation image files" in msg[0]
    assert "--data" in msg[0] and "not a split file" not in res.output


def test_evaluate_prints_a_mean_shape_row_from_the_labels(blobs, fake_models, tmp_path):
    folder, _, pts, ck = blobs
    js = tmp_path / "m.json"
    out = _cli(["evaluate", "--checkpoint", ck, "--data", folder, "--json", js, "--n-worst", "0"])
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("setting"))
    assert lines[head + 1].split()[0] == "mean-shape" and "the mean of these labels" in out
    base = json.loads(js.read_text())["mean_shape"]
    want = metrics.summary(np.repeat(pts.mean(axis=0)[None], len(pts), axis=0), pts, BLOBS4)
    assert base["source"] == "labels" and base["mse"] == pytest.approx(want["mse"], rel=1e-5)
    assert float(lines[head + 1].split()[2]) == pytest.approx(want["mse"], abs=1e-3)
    assert "WARNING" not in out                     # the blob finder beats the mean shape


def test_the_training_mean_shape_is_placed_through_the_preprocessing(tmp_path):
    pre = ak.Compose(preprocess_steps(64, "letterbox"))
    mean_norm = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.5, 0.8]])
    model = FixedModel(np.zeros((4, 2)), preprocess=pre)
    model.mean_shape, model.input_size = mean_norm, (64, 64)
    folder = tmp_path / "d"
    write_blob_dataset(folder, n=3, seed=5)
    files = sorted(str(p) for p in (folder / "images").iterdir())
    base = MeanShapeBaseline([model], np.zeros((3, 4, 2)))
    got = base.points(files, np.array([True, False, True]))
    assert base.source == "training" and np.isnan(got[1]).all()
    for f, p in ((files[0], got[0]), (files[2], got[2])):
        w, h = ak.io.image_size(f)
        m = pre.plan((w, h))[0]
        np.testing.assert_allclose(geometry.apply_points(m, p), mean_norm * 64 - 0.5, atol=1e-9)


def test_a_model_worse_than_the_mean_shape_is_flagged(blobs, tmp_path):
    folder, *_ = blobs
    const = FixedModel(np.zeros((4, 2)) + 3.0, preprocess=ak.Compose(preprocess_steps(64, "letterbox")))
    report = evaluate_tta([const], folder, tta=(), n_worst=0)
    lines = report_lines(report)
    assert any(line.startswith("WARNING: every setting has a higher MSE than the mean shape") for line in lines)


def test_evaluate_of_a_trained_run_uses_its_training_mean_shape(tmp_path, ytf68):
    run = tmp_path / "run"
    _cli(["train", "--data", ytf68 / "train", "--limit", "40", "--backbone", "tiny", "--size", "32", "--batch-size",
          "8", "--workers", "0", "--quiet", "--threads", "1", "--epochs", "1", "--val-group", "person",
          "--val-fraction", "0.3", "--out", run])
    from augkit.run_folder import validation_labels
    val = validation_labels(str(run))
    from augkit.models.checkpoint import load_model, read_checkpoint
    np.testing.assert_array_equal(load_model(run / "best.pt").mean_shape, read_checkpoint(run / "best.pt")["mean_shape"])
    report = evaluate_tta([str(run / "best.pt")], val, tta=(), n_worst=0)
    log = (run / "log.csv").read_text().splitlines()
    row = dict(zip(log[0].split(","), log[1].split(",")))
    # the same baseline as training's validation: the checkpoint's mean shape placed on every image
    assert report.baseline_source == "training"
    assert report.baseline["mse"] == pytest.approx(float(row["base_mse"]), rel=1e-4)
    assert report.results[0]["mse"] == pytest.approx(float(row["mse"]), rel=1e-4)
