"""Streaming TTA: chunked prediction equals the in-memory one, workers change nothing, and chunk
boundaries (inside an ensemble's members, on unreadable images) lose nothing."""

import math
import os

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import BlobModel, FixedModel, write_blob_dataset

import augkit as ak
from augkit.tta import runners
from augkit.cli import main
from augkit.presets import preprocess_steps
from augkit.schemes import Scheme
from augkit.tta import TTAPredictor, submission_text
from augkit.tta.outputs import points_csv_text

SCHEME5 = Scheme("five", 5, ((0, 1), (2, 3)))


@pytest.fixture
def blob_set(tmp_path):
    folder = tmp_path / "blobs"
    names, pts = write_blob_dataset(folder, n=9, seed=4, bad=("face_004.png",))
    ck = tmp_path / "model.pt"
    ck.write_bytes(b"stand-in")
    return folder, names, str(ck)


@pytest.fixture
def fake_models(monkeypatch):
    def load(paths, device="cpu"):
        return [BlobModel(ak.Compose(preprocess_steps(64, "letterbox"))) for _ in paths]
    monkeypatch.setattr(runners, "load_models", load)


def _paths(folder, names):
    return [str(folder / "images" / n) for n in names]


def _in_memory(folder, names, tta, n_models=1):
    models = [BlobModel(ak.Compose(preprocess_steps(64, "letterbox"))) for _ in range(n_models)]
    return TTAPredictor(models, tta, max_batch=64).predict(_paths(folder, names), names=names)


@pytest.mark.parametrize("max_batch", [1, 5, 7, 64])
def test_streaming_submission_is_byte_identical_to_in_memory(blob_set, fake_models, tmp_path, max_batch):
    folder, names, ck = blob_set
    out = tmp_path / "sub.csv"
    res = CliRunner().invoke(main, ["predict", "--checkpoint", ck, "--data", str(folder), "--tta", "flip-rot",
                                    "--out", str(out), "--max-batch", str(max_batch), "--workers", "0"])
    assert res.exit_code == 0, res.output
    from augkit.data import read_test_points
    tp = read_test_points(folder)
    ref = _in_memory(folder, names, "flip-rot")
    preds = {n: ref.points[i] for i, n in enumerate(ref.names) if ref.ok[i]}
    text, missing = submission_text(tp, preds)
    # face_004.png is unreadable: the blob model finds nothing on the grey fallback, so it is missing
    assert missing == ["face_004.png"]
    assert out.read_text() == text
    assert "face_004.png" in res.output and "WARNING" in res.output


@pytest.mark.parametrize("max_batch", [1, 4, 13, 200])
def test_streamed_points_equal_in_memory_points(blob_set, max_batch):
    folder, names, _ = blob_set
    ref = _in_memory(folder, names, "full")
    pred = TTAPredictor(BlobModel(ak.Compose(preprocess_steps(64, "letterbox"))), "full", max_batch=max_batch)
    chunks = list(pred.iter_predict(_paths(folder, names), names=names))
    assert [n for c in chunks for n in c.names] == names
    assert [c.start for c in chunks] == list(np.cumsum([0] + [len(c) for c in chunks[:-1]]))
    pts = np.concatenate([c.points for c in chunks])
    spr = np.concatenate([c.spread for c in chunks])
    ok = np.concatenate([c.ok for c in chunks])
    assert ok.tolist() == ref.ok.tolist() and not ok[4]
    np.testing.assert_allclose(pts[ok], ref.points[ok], rtol=0, atol=1e-6)
    np.testing.assert_allclose(spr[ok], ref.spread[ok], rtol=0, atol=1e-6)
    assert all(c.members is None for c in chunks)          # nothing per member is kept by default
    # no chunk holds more images than one model call covers (+1 for a split image)
    assert all(len(c) - (~c.ok).sum() <= math.ceil(max_batch / 24) + 1 for c in chunks)


def test_cli_outputs_identical_with_two_workers(blob_set, fake_models, tmp_path):
    folder, names, ck = blob_set
    outs = {}
    for w in (0, 2):
        for ext, extra in (("sub.csv", []), ("all.json", ["--uncertainty"])):
            out = tmp_path / f"w{w}_{ext}"
            res = CliRunner().invoke(main, ["predict", "--checkpoint", ck, "--data", str(folder), "--tta", "flip",
                                            "--out", str(out), "--workers", str(w), "--max-batch", "5"] + extra)
            assert res.exit_code == 0, res.output
            outs[(w, ext)] = out.read_bytes()
    assert outs[(0, "sub.csv")] == outs[(2, "sub.csv")]
    assert outs[(0, "all.json")] == outs[(2, "all.json")]


def test_workers_on_real_ytf68_images_with_a_torch_model(ytf68):
    torch = pytest.importorskip("torch")
    from augkit.tta import TorchCallable
    files = sorted(os.listdir(ytf68 / "test" / "images"))[:6]
    paths = [str(ytf68 / "test" / "images" / f) for f in files] + [str(ytf68 / "no_such.jpg")]
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=4), torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(),
                              torch.nn.Linear(16, 10))
    model = TorchCallable(net, preprocess=ak.Compose(preprocess_steps(48)), scheme=SCHEME5)
    pred = TTAPredictor(model, "flip-rot", max_batch=7)
    a = list(pred.iter_predict(paths, workers=0, keep_members=True))
    b = list(pred.iter_predict(paths, workers=2, keep_members=True))
    for key in ("points", "spread", "members", "ok", "fallback"):
        np.testing.assert_array_equal(np.concatenate([getattr(c, key) for c in a]),
                                      np.concatenate([getattr(c, key) for c in b]))
    assert [e for c in a for e in c.errors] == [e for c in b for e in c.errors]
    ok = np.concatenate([c.ok for c in a])
    assert ok.tolist() == [True] * 6 + [False]


@pytest.mark.parametrize("max_batch", [1, 3, 5])
def test_chunk_boundary_inside_an_ensemble_loses_nothing(max_batch):
    pre = ak.Compose(preprocess_steps(40))
    rng = np.random.default_rng(0)
    images = [(rng.random((60 + 5 * i, 70, 3)) * 255).astype(np.uint8) for i in range(5)]
    a = FixedModel(np.full((5, 2), 10.0), preprocess=pre, scheme=SCHEME5)
    b = FixedModel(np.arange(10.0).reshape(5, 2) + 15, preprocess=pre, scheme=SCHEME5)
    whole = TTAPredictor([a, b], "flip-rot", max_batch=100).predict(images)
    pred = TTAPredictor([a, b], "flip-rot", max_batch=max_batch)   # 6 views: every call splits images
    chunks = list(pred.iter_predict(images, keep_members=True))
    members = np.concatenate([c.members for c in chunks])
    assert members.shape == (5, 12, 5, 2) and np.isfinite(members).all()
    np.testing.assert_allclose(members, whole.members, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.concatenate([c.points for c in chunks]), whole.points, rtol=0, atol=1e-12)


@pytest.mark.parametrize("max_batch", [1, 2, 3, 4])
def test_unreadable_images_on_chunk_boundaries_lose_nothing(tmp_path, max_batch):
    import cv2
    rng = np.random.default_rng(1)
    paths = []
    for i in range(7):
        p = tmp_path / f"im{i}.png"
        if i in (0, 3, 4, 6):              # first, a run of two, last
            p.write_bytes(b"" if i != 3 else b"garbage")
        else:
            cv2.imwrite(str(p), (rng.random((50, 60, 3)) * 255).astype(np.uint8))
        paths.append(str(p))
    model = FixedModel(np.full((5, 2), 12.0), preprocess=ak.Compose(preprocess_steps(32)), scheme=SCHEME5)
    pred = TTAPredictor(model, "flip", max_batch=max_batch)
    chunks = list(pred.iter_predict(paths))
    assert [n for c in chunks for n in c.names] == paths
    ok = np.concatenate([c.ok for c in chunks])
    assert ok.tolist() == [False, True, True, False, False, True, False]
    assert [n for c in chunks for n, _ in c.errors] == [paths[i] for i in (0, 3, 4, 6)]
    pts = np.concatenate([c.points for c in chunks])
    assert np.isnan(pts[~ok]).all() and np.isfinite(pts[ok]).all()
    # with the grey fallback every image gets finite points, and the readable ones do not change
    fb = list(pred.iter_predict(paths, fallback="grey"))
    fpts = np.concatenate([c.points for c in fb])
    assert np.isfinite(fpts).all() and np.concatenate([c.fallback for c in fb]).tolist() == (~ok).tolist()
    np.testing.assert_array_equal(fpts[ok], pts[ok])


def test_fallback_size_from_header_else_median_of_others(tmp_path):
    import cv2
    from augkit.tta.predictor import ViewSource
    sizes = [(40, 50), (60, 70), (80, 90)]
    paths = []
    for i, (h, w) in enumerate(sizes):
        p = tmp_path / f"ok{i}.png"
        cv2.imwrite(str(p), np.zeros((h, w, 3), np.uint8))
        paths.append(str(p))
    trunc = tmp_path / "trunc.png"             # a PNG header that PIL reads, a body that does not decode
    trunc.write_bytes((tmp_path / "ok2.png").read_bytes()[:60])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    src = ViewSource(paths + [str(trunc), str(empty)], [[ak.Compose([])]], fallback="grey")
    assert src.fallback_size(3) == (80, 90)
    assert src.fallback_size(4) == (70, 80)     # median of the other readable headers (trunc.png counts)
    item = src[4]
    assert item["fallback"] and not item["ok"] and item["views"][0].shape == (1, 70, 80, 3)
    assert (item["views"][0] == 128).all()


def test_points_csv_quotes_names_like_the_csv_module():
    import csv
    import io
    names = ['a,b.jpg', 'say "hi".png', "plain.jpg"]
    text = points_csv_text(names, np.zeros((3, 2, 2)))
    rows = list(csv.reader(io.StringIO(text)))
    assert [r[0] for r in rows[1:]] == names and all(len(r) == 5 for r in rows)


def test_fit_and_evaluate_identical_with_two_workers(tmp_path, fake_models):
    folder = tmp_path / "lab"
    write_blob_dataset(folder, n=10, seed=6, bad=("face_003.png",))
    ck = tmp_path / "model.pt"
    ck.write_bytes(b"stand-in")
    outs = {}
    for w in (0, 2):
        spec, js = tmp_path / f"fit{w}.yaml", tmp_path / f"eval{w}.json"
        res = CliRunner().invoke(main, ["tta", "fit", "--checkpoint", str(ck), "--data", str(folder), "--tta", "flip-rot",
                                        "--out", str(spec), "--folds", "3", "--workers", str(w), "--max-batch", "5"])
        assert res.exit_code == 0, res.output
        res = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(ck), "--data", str(folder), "--tta", "flip",
                                        "--json", str(js), "--n-worst", "0", "--workers", str(w)])
        assert res.exit_code == 0, res.output
        assert "face_003.png" in res.output
        outs[w] = (spec.read_bytes(), js.read_text().replace(f"eval{w}", ""))
    assert outs[0] == outs[2]
