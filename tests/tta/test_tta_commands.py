"""`augkit predict`, `augkit evaluate`, `augkit tta fit` on a synthetic blob dataset, with the
checkpoint loader replaced by a content-based model (the real checkpoints: test_trained.py)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import BlobModel, blob_set, python_prints_ok, write_blob_dataset

import augkit as ak
from augkit.tta import runners
from augkit.cli import main
from augkit.presets import preprocess_steps
from augkit.tta import load_spec


@pytest.fixture
def fake_models(monkeypatch):
    loaded = []

    def load(paths, device="cpu"):
        ms = [BlobModel(ak.Compose(preprocess_steps(96, "letterbox"))) for _ in paths]
        loaded.extend(ms)
        return ms

    monkeypatch.setattr(runners, "load_models", load)
    return loaded


@pytest.fixture
def blobs(tmp_path):
    return blob_set(tmp_path, seed=1)


def _run(args):
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    return res


def test_import_does_not_load_torch_and_commands_are_listed():
    code = ("import sys, augkit.tta, augkit.cli.predict as c; assert 'torch' not in sys.modules, 'torch imported'; "
            "import click; assert isinstance(c.predict, click.Command) and isinstance(c.evaluate, click.Command); "
            "assert isinstance(c.tta, click.Group) and 'fit' in c.tta.commands; print('ok')")
    python_prints_ok(code)
    for cmd in ("predict", "evaluate"):
        assert "--checkpoint" in _run([cmd, "--help"]).output
    assert "fit" in _run(["tta", "--help"]).output
    assert "--level" in _run(["tta", "fit", "--help"]).output


@pytest.mark.parametrize("tta", ["none", "flip", "full"])
def test_predict_writes_the_submission(blobs, fake_models, tmp_path, tta):
    folder, names, pts, ck = blobs
    out = tmp_path / "sub.csv"
    res = _run(["predict", "--checkpoint", ck, "--data", str(folder), "--tta", tta, "--out", str(out),
                "--max-batch", "7"])
    assert res.exit_code == 0, res.output
    lines = out.read_text().splitlines()
    tp = [line.split("\t") for line in (folder / "test_points.csv").read_text().splitlines()[1:]]
    assert lines[0] == "file_name,Point_M0_X,Point_M0_Y,Point_M1_X,Point_M1_Y,Point_M2_X,Point_M2_Y"
    assert [line.split(",")[0] for line in lines[1:]] == [name for name, _ in tp]
    truth = dict(zip(names, pts))
    for line, (name, idx) in zip(lines[1:], tp):
        vals = np.array([int(v) for v in line.split(",")[1:]]).reshape(-1, 2)   # integers only
        expect = truth[name][json.loads(idx)]
        assert np.abs(vals - expect).max() <= 1.0
    views = {"none": 1, "flip": 2, "full": 24}[tta]
    assert fake_models[0].calls == -(-10 * views // 7)


def test_predict_skips_unreadable_images_by_name(tmp_path, fake_models):
    folder = tmp_path / "d"
    names, _ = write_blob_dataset(folder, n=6, seed=2, bad=("face_002.png",))
    (folder / "images" / "face_004.png").unlink()
    ck = tmp_path / "m.pt"
    ck.write_bytes(b"x")
    out = tmp_path / "sub.csv"
    res = CliRunner().invoke(main, ["predict", "--checkpoint", str(ck), "--data", str(folder), "--tta", "flip",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "face_002.png" in res.output and "face_004.png" in res.output
    rows = [line.split(",")[0] for line in out.read_text().splitlines()[1:]]
    assert sorted(rows) == sorted(set(names) - {"face_002.png", "face_004.png"})


def test_predict_all_points_with_uncertainty(blobs, fake_models, tmp_path):
    folder, _, pts, ck = blobs
    out = tmp_path / "all.csv"
    res = _run(["predict", "--checkpoint", ck, "--data", str(folder / "images"), "--tta", "flip-rot",
                "--out", str(out), "--uncertainty"])
    assert res.exit_code == 0, res.output
    lines = out.read_text().splitlines()
    assert lines[0].endswith("Point_3_S") and len(lines) == 11
    first = lines[1].split(",")
    assert first[0] == "face_000.png"
    np.testing.assert_allclose(np.array(first[1:9], float).reshape(4, 2), pts[0], atol=0.6)
    assert all(0 <= float(s) < 1.0 for s in first[9:])
    out_json = tmp_path / "all.json"
    assert _run(["predict", "--checkpoint", ck, "--data", str(folder), "--tta", "flip", "--out", str(out_json),
                 "--uncertainty"]).exit_code == 0
    d = json.loads(out_json.read_text())
    assert len(d["images"]) == 10 and len(d["images"][0]["uncertainty"]) == 4


def test_bad_spec_is_a_clean_error(blobs, fake_models, tmp_path):
    folder, *_, ck = blobs
    spec = tmp_path / "bad.yaml"
    spec.write_text("views:\n  - steps: [{type: Hflip}]\n")
    res = CliRunner().invoke(main, ["predict", "--checkpoint", ck, "--data", str(folder), "--tta", str(spec),
                                    "--out", str(tmp_path / "o.csv")])
    assert res.exit_code != 0 and not isinstance(res.exception, (ValueError, TypeError))
    assert "bad.yaml: views[0].steps[0]: unknown step type 'Hflip'" in res.output
    res = CliRunner().invoke(main, ["predict", "--checkpoint", ck, "--data", str(folder), "--tta", "flipp",
                                    "--out", str(tmp_path / "o.csv")])
    assert res.exit_code != 0 and "neither a preset" in res.output


def test_evaluate_table_json_and_png(blobs, fake_models, tmp_path):
    folder, *_, ck = blobs
    png, js = tmp_path / "worst.png", tmp_path / "m.json"
    res = _run(["evaluate", "--checkpoint", ck, "--data", str(folder), "--tta", "flip", "--tta", "full",
                "--png", str(png), "--json", str(js), "--n-worst", "4"])
    assert res.exit_code == 0, res.output
    for word in ("setting", "MSE", "NME", "rho_pt", "none", "flip", "full"):
        assert word in res.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    rows = json.loads(js.read_text())["results"]
    assert [r["setting"] for r in rows] == ["none", "flip", "full"]
    assert [r["members"] for r in rows] == [1, 2, 24]
    assert all(r["mse"] < 0.5 for r in rows)
    # the union of views is predicted once: 24 distinct views (none and flip are inside full); the
    # picture predicts the best setting's 4 worst images again (evaluate streams, keeping no points)
    best = min(rows, key=lambda r: r["mse"])
    assert sum(fake_models[0].sizes) == 10 * 24 + 4 * best["members"]


def test_tta_fit_writes_weights_and_predict_uses_them(blobs, fake_models, tmp_path):
    folder, *_, ck = blobs
    spec = tmp_path / "fitted.yaml"
    res = _run(["tta", "fit", "--checkpoint", ck, "--data", str(folder), "--tta", "flip-rot", "--out", str(spec),
                "--folds", "3"])
    assert res.exit_code == 0, res.output
    for word in ("plain average", "fitted per member", "alone", "gain", "wrote"):
        assert word in res.output
    fitted = load_spec(spec)
    assert fitted.weights is not None and fitted.weights.shape[0] == 6 and fitted.models == ["model.pt"]
    np.testing.assert_allclose(fitted.member_weights(1, 4).sum(axis=0), 1.0)
    out = tmp_path / "sub.csv"
    assert _run(["predict", "--checkpoint", ck, "--data", str(folder), "--tta", str(spec),
                 "--out", str(out)]).exit_code == 0
    # weights fitted for one model cannot be used with two
    res = CliRunner().invoke(main, ["predict", "--checkpoint", ck, "--checkpoint", ck, "--data", str(folder),
                                    "--tta", str(spec), "--out", str(out)])
    assert res.exit_code != 0 and "fitted for 1 checkpoint" in res.output


def test_ensemble_fit_has_models_times_views_members(blobs, fake_models, tmp_path):
    folder, *_, ck = blobs
    spec = tmp_path / "ens.json"
    res = _run(["tta", "fit", "--checkpoint", ck, "--checkpoint", ck, "--data", str(folder), "--tta", "flip",
                "--out", str(spec), "--level", "view", "--folds", "2"])
    assert res.exit_code == 0, res.output
    fitted = load_spec(spec)   # models x views weights, or models x 1 when no TTA beat the identity view
    assert fitted.weights.shape == (2 * len(fitted.views),) and fitted.fit["merge"] in fitted.fit["cv_mse"]
    assert "model0/identity" in res.output and "model1/hflip" in res.output
