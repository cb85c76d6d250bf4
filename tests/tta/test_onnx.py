"""ONNX export (`augkit export`, augkit.tta.export) and `augkit predict --onnx`: ONNX Runtime gives the
PyTorch path's points and σ within 1e-3 px for every head, with no TTA, flip and a fitted spec, for
1 and 16 images; the JSON description with numpy alone (augkit.tta.onnx_spec) reproduces the
views, inverses and merge without importing torch; an operator ONNX cannot express is one line."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from click.testing import CliRunner  # noqa: E402

import augkit as ak  # noqa: E402
from augkit.cli import main  # noqa: E402
from augkit.models import HEAD_SETTINGS  # noqa: E402
from augkit.models.checkpoint import load_model, save_checkpoint  # noqa: E402
from augkit.models.heads import find_head, head_info  # noqa: E402
from augkit.models.network import TinyNet, build_model  # noqa: E402
from augkit.presets import preprocess_pipeline, preprocess_steps  # noqa: E402
from augkit.tta import TTAPredictor, get_spec, save_spec, with_weights  # noqa: E402
from augkit.tta import onnx_spec  # noqa: E402
from augkit.tta.export import describe, export_onnx, load_onnx  # noqa: E402
from augkit.tta.merge import MERGES  # noqa: E402
from augkit.tta.predictor import merge_chunk  # noqa: E402

SIZE = 32
K = 68
TOL = 1e-3


def _checkpoint(path, head: str, seed: int = 0) -> str:
    torch.manual_seed(seed)
    net = build_model("tiny", K, head=head, input_size=(SIZE, SIZE))
    with torch.no_grad():   # BN statistics away from 0/1, so the normalisation in the graph matters
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    ck = {"model": net.state_dict(), "scheme": "ibug68", "config": {},
          "preprocessing": ak.Compose(preprocess_steps(SIZE)).to_dict(),
          "model_info": {"backbone": "tiny", "n_points": K, "input_size": [SIZE, SIZE],
                         "head": head_info(find_head(net))}}
    save_checkpoint(path, ck)
    return str(path)


def _images(n: int, seed: int = 1) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h, w = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        base = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3)).astype(np.uint8)
        out.append(np.ascontiguousarray(np.kron(base, np.ones((4, 4, 1), dtype=np.uint8))[:h, :w]))
    return out


def _fitted(has_sigma: bool):
    """A fitted spec: flip-rot's 6 views with per-landmark weights (as `augkit tta fit` writes)."""
    spec = get_spec("flip-rot")
    w = np.random.default_rng(5).uniform(0.05, 1.0, (len(spec.views), K))
    return with_weights(spec, w, models=["best.pt"], name="flip-rot-fitted", merge="sigma" if has_sigma else "mean")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Per head: (checkpoint, the torch model, the ONNX model, the fitted spec, the JSON path)."""
    root = tmp_path_factory.mktemp("onnx")
    out = {}
    for head in HEAD_SETTINGS:
        ck = _checkpoint(root / f"{head}.pt", head)
        spec = _fitted(head != "regression")
        save_spec(spec, root / f"{head}.yaml")
        summary = export_onnx(ck, root / f"{head}.onnx", tta=str(root / f"{head}.yaml"))
        assert summary.max_deviation is not None and summary.max_deviation < TOL
        model, loaded = load_onnx(root / f"{head}.onnx", device="cpu")
        assert loaded.merge == spec.merge and np.allclose(loaded.weights, spec.weights, atol=1e-6)
        out[head] = types.SimpleNamespace(ck=ck, torch=load_model(ck), onnx=model, spec=loaded,
                                          json=str(root / f"{head}.json"), onnx_path=str(root / f"{head}.onnx"))
    return out


@pytest.mark.parametrize("head", list(HEAD_SETTINGS))
def test_onnx_runtime_gives_the_pytorch_points_for_every_head(exported, head):
    e = exported[head]
    assert e.onnx.has_sigma == e.torch.has_sigma
    images = _images(16)
    for tta in ("none", "flip", e.spec):
        for n in (1, 16):
            a = TTAPredictor(e.torch, tta).predict(images[:n])
            b = TTAPredictor(e.onnx, tta).predict(images[:n])
            assert a.points.shape == b.points.shape == (n, K, 2)
            assert np.abs(a.points - b.points).max() < TOL, (head, tta, n)
            assert np.abs(a.spread - b.spread).max() < TOL
            if e.torch.has_sigma:
                assert np.abs(a.sigma - b.sigma).max() < TOL
            else:
                assert a.sigma is None and b.sigma is None


def test_the_graph_takes_any_batch_and_refuses_another_size(exported):
    e = exported["rle"]
    x = np.random.default_rng(0).integers(0, 256, (16, SIZE, SIZE, 3), dtype=np.uint8)
    for n in (1, 16):
        p, s = e.onnx.call_with_sigma(x[:n])
        q, t = e.torch.call_with_sigma(x[:n])
        assert p.dtype == np.float32 and p.shape == (n, K, 2) and s.shape == (n, K)
        assert np.abs(p - q).max() < TOL and np.abs(s - t).max() < TOL
    with pytest.raises(ValueError, match=r"uint8 \(N, 32, 32, 3\)"):
        e.onnx(np.zeros((1, SIZE + 1, SIZE, 3), dtype=np.uint8))


def test_the_description_holds_views_permutations_and_weights(exported):
    e = exported["simcc"]
    d = json.loads(open(e.json).read())
    assert d["input"]["dtype"] == "uint8" and d["input"]["layout"] == "NHWC" and d["input"]["shape"] == ["N", 32, 32, 3]
    assert set(d["outputs"]) == {"points", "sigma"} and d["preprocessing"]["mode"] == "crop"
    scheme = ak.get_scheme("ibug68")
    views = d["tta"]["views"]
    assert [v["name"] for v in views] == [v.name for v in e.spec.views]
    for v, view in zip(views, e.spec.views):
        m, _, flips = view.pipeline.plan((SIZE, SIZE))
        assert np.allclose(v["matrix"], m[:2]) and v["flips"] == flips
        assert v["perm"] == (scheme.perm.tolist() if flips % 2 else list(range(K)))
    w = np.asarray(d["tta"]["weights"])
    assert w.shape == (6, K) and np.allclose(w, e.spec.member_weights(1, K))
    assert d["tta"]["weights_kind"] == "per_landmark" and d["tta"]["merge"] == "sigma"
    for ex in d["preprocessing"]["examples"]:   # the formula of the reference gives augkit's matrices
        assert np.allclose(onnx_spec.preprocess_matrix(d, *ex["image_size"])[:2], ex["matrix"])


@pytest.mark.parametrize("mode", ["crop", "letterbox"])
def test_the_reference_preprocessing_formula_is_augkits(mode):
    pre = preprocess_pipeline(SIZE, mode)
    model = types.SimpleNamespace(preprocess=pre, scheme=None, input_size=(SIZE, SIZE), n_points=3, has_sigma=False)
    d = describe(model, get_spec("none"))
    assert d["preprocessing"]["mode"] == mode
    for wh in [(32, 32), (33, 31), (100, 47), (47, 100), (65, 64), (16, 80), (1000, 333), (31, 97)]:
        want, _, _ = pre.plan(wh)
        assert np.allclose(onnx_spec.preprocess_matrix(d, *wh), want, atol=1e-12), wh


@pytest.mark.parametrize("method", MERGES)
def test_the_reference_merge_is_augkits(method):
    rng = np.random.default_rng(3)
    spec = get_spec("flip-rot")
    k = 5
    spec = with_weights(spec, rng.uniform(0.1, 1.0, (len(spec.views), k)), merge=method)
    d = json.loads(json.dumps(_description_without_scheme(spec, k)))
    members = rng.normal(50, 3, (4, len(spec.views), k, 2))
    members[0, 2] += 40   # an outlier view on one image
    sigma = rng.uniform(0.5, 3.0, (4, len(spec.views), k))
    want_p, _, want_s = merge_chunk(members, sigma, spec, 1)
    got_p, got_s = onnx_spec.merge(d, members, sigma)
    assert np.allclose(got_p, want_p, atol=1e-9) and np.allclose(got_s, want_s, atol=1e-9)


def _description_without_scheme(spec, k):
    """describe() of a σ model on a scheme of k points with one flip pair (JSON as written)."""
    scheme = ak.Scheme("five", k, ((0, 1),))
    model = types.SimpleNamespace(preprocess=preprocess_pipeline(SIZE), scheme=scheme, input_size=(SIZE, SIZE),
                                  n_points=k, has_sigma=True)
    return describe(model, spec)


def test_the_reference_bilinear_warp_is_close_to_opencv():
    from augkit.functional import warp
    img = _images(1, seed=4)[0]
    m = np.array([[0.5, 0.1, 3.0], [-0.1, 0.6, 1.0], [0.0, 0.0, 1.0]])
    a = onnx_spec.warp_bilinear(img, m, (32, 32)).astype(int)
    b = warp(img, m, (32, 32), preshrink=0).astype(int)
    # OpenCV rounds the sample positions to 1/32 px: a few grey levels on sharp edges, little on average
    assert np.abs(a - b).max() <= 8 and np.abs(a - b).mean() < 0.5


def test_the_json_and_numpy_alone_reproduce_the_merge_without_torch(exported, tmp_path):
    """In a fresh interpreter: ONNX Runtime for the forward, augkit.tta.onnx_spec for the views,
    inverses and merge (augkit's OpenCV warp for the same pixels); torch is never imported."""
    e = exported["rle"]
    images = _images(5, seed=7)
    want = TTAPredictor(e.torch, e.spec).predict(images)
    np.savez(tmp_path / "case.npz", *images, points=want.points, sigma=want.sigma, spread=want.spread)
    code = f"""
import sys, numpy as np, onnxruntime as ort
from augkit.functional import warp
from augkit.tta import onnx_spec
desc = onnx_spec.read_description({e.json!r})
sess = ort.InferenceSession({e.onnx_path!r}, providers=["CPUExecutionProvider"])
case = np.load({str(tmp_path / "case.npz")!r})
images = [case[f"arr_{{i}}"] for i in range(5)]
res = onnx_spec.predict(desc, (im for im in images), lambda b: tuple(sess.run(None, {{"images": b}})),
                        warp=lambda im, m, size: warp(im, m, size), batch_size=7, keep_members=True)
assert res["members"].shape == (5, 6, {K}, 2)
assert np.abs(res["points"] - case["points"]).max() < {TOL}, np.abs(res["points"] - case["points"]).max()
assert np.abs(res["sigma"] - case["sigma"]).max() < {TOL}
assert np.abs(res["spread"] - case["spread"]).max() < {TOL}
approx = onnx_spec.predict(desc, images, lambda b: tuple(sess.run(None, {{"images": b}})))
assert np.isfinite(approx["points"]).all()
assert "torch" not in sys.modules
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr


def _run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_cli_export_of_a_run_and_predict_onnx_match_predict_checkpoint(exported, tmp_path):
    import cv2
    e = exported["rle"]
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(open(e.ck, "rb").read())
    save_spec(e.spec, run / "tta.yaml")
    data = tmp_path / "imgs"
    data.mkdir()
    for i, im in enumerate(_images(4, seed=9)):
        cv2.imwrite(str(data / f"im{i}.png"), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    res = _run(["export", "--run", str(run), "--out", str(tmp_path / "m.onnx")])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and "checked: ONNX Runtime" in res.output
    d = json.loads((tmp_path / "m.json").read_text())
    assert d["tta"]["name"] == e.spec.name and np.allclose(d["tta"]["weights"], e.spec.member_weights(1, K))
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    res = _run(["predict", "--onnx", str(tmp_path / "m.onnx"), "--data", str(data), "--out", str(a),
                "--uncertainty", "--workers", "0"])
    assert res.exit_code == 0, res.output
    assert "TTA from the export's description" in res.output
    res = _run(["predict", "--run", str(run), "--data", str(data), "--out", str(b), "--uncertainty",
                "--workers", "0", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    ra, rb = (np.loadtxt(p, delimiter=",", skiprows=1, usecols=range(1, 1 + 4 * K)) for p in (a, b))
    assert ra.shape == rb.shape == (4, 4 * K) and np.abs(ra - rb).max() <= TOL + 1e-9   # written to 0.001
    assert (a.read_text().splitlines()[0] == b.read_text().splitlines()[0])


def test_cli_predict_onnx_refuses_a_checkpoint_beside_it(exported, tmp_path):
    e = exported["regression"]
    res = CliRunner().invoke(main, ["predict", "--onnx", e.onnx_path, "--checkpoint", e.ck, "--data", e.ck,
                                    "--out", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "--onnx replaces --checkpoint" in res.output


def test_an_operator_onnx_cannot_express_is_one_line_naming_it(exported, tmp_path, monkeypatch):
    def forward(self, x):
        f = torch.flatten(self.pool(self.features(x)), 1)
        return self.fc(f + 0.0 * torch.kthvalue(f, 1, dim=1)[0][:, None])

    monkeypatch.setattr(TinyNet, "forward", forward)
    out = tmp_path / "bad.onnx"
    res = CliRunner().invoke(main, ["export", "--checkpoint", exported["regression"].ck, "--out", str(out)])
    assert res.exit_code == 1, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "aten.kthvalue" in lines[0], res.output
    assert not out.exists() and not (tmp_path / "bad.json").exists()


def test_predict_onnx_runs_without_torch(exported, tmp_path):
    """`augkit predict --onnx` in an interpreter where torch cannot be imported: the views are warped
    in the main process and the points are the PyTorch path's."""
    import cv2
    e = exported["integral"]
    data = tmp_path / "imgs"
    data.mkdir()
    images = _images(3, seed=11)
    for i, im in enumerate(images):
        cv2.imwrite(str(data / f"im{i}.png"), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    out = tmp_path / "p.csv"
    code = f"""
import sys
sys.modules["torch"] = None          # any import of torch fails
from augkit.cli import main
main(["predict", "--onnx", {e.onnx_path!r}, "--data", {str(data)!r}, "--out", {str(out)!r}, "--tta", "flip"],
     standalone_mode=False)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "ok" in done.stdout, done.stdout + done.stderr
    got = np.loadtxt(out, delimiter=",", skiprows=1, usecols=range(1, 1 + 2 * K))
    want = TTAPredictor(e.torch, "flip").predict([str(data / f"im{i}.png") for i in range(3)])
    assert np.abs(got - want.points.reshape(3, -1)).max() < TOL   # written to 0.001: within 5e-4 + the backends'


def test_a_graph_onnx_runtime_cannot_run_is_one_line_naming_the_operator(exported, tmp_path, monkeypatch):
    """The export's own check in ONNX Runtime: its 'no implementation' error becomes one line naming
    the operator (the message ONNX Runtime gives for a node it has no kernel for), nothing written."""
    import augkit.tta.export as export
    from augkit.models.onnx_export import ExportError

    def refuse(self, onnx, description, device="auto", threads=None):
        raise RuntimeError("[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for "
                           "GridSample(20) node with name '/net/GridSample'")

    monkeypatch.setattr(export.OnnxModel, "__init__", refuse)
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="no implementation of the operator GridSample") as info:
        export_onnx(exported["regression"].ck, out)
    assert "\n" not in str(info.value)
    assert not out.exists() and not (tmp_path / "m.json").exists()


def test_a_perspective_view_exports_as_three_rows_and_numpy_maps_it_back(exported, tmp_path):
    """A projective TTA view (augkit.Perspective) travels as a 3x3 matrix; the numpy reference
    warps by it, divides the points back and scales σ by the local area, as the PyTorch path does."""
    from augkit.functional import warp
    from augkit.tta import TTASpec, View
    e = exported["rle"]
    spec = TTASpec([View.from_steps("identity", []), View.from_steps("yaw", [ak.Perspective(yaw=0.2)]),
                    View.from_steps("hflip-pitch", [ak.HFlip(), ak.Perspective(pitch=-0.15)])], merge="sigma")
    save_spec(spec, tmp_path / "persp.yaml")
    export_onnx(e.ck, tmp_path / "persp.onnx", tta=str(tmp_path / "persp.yaml"))
    d = onnx_spec.read_description(tmp_path / "persp.json")
    assert [len(v["matrix"]) for v in d["tta"]["views"]] == [2, 3, 3]
    images = _images(4, seed=3)
    want = TTAPredictor(e.torch, spec).predict(images)
    model, loaded = load_onnx(tmp_path / "persp.onnx", device="cpu")
    via_ort = TTAPredictor(model, loaded).predict(images)
    assert np.abs(via_ort.points - want.points).max() < TOL
    res = onnx_spec.predict(d, images, lambda b: e.torch.call_with_sigma(b), warp=lambda im, m, size: warp(im, m, size),
                            batch_size=5)
    assert np.abs(res["points"] - want.points).max() < TOL
    assert np.abs(res["sigma"] - want.sigma).max() < TOL
    approx = onnx_spec.warp_bilinear(images[0], view_matrices_first_projective(d, images[0]), (SIZE, SIZE))
    ref = warp(images[0], view_matrices_first_projective(d, images[0]), (SIZE, SIZE), preshrink=0)
    assert np.abs(approx.astype(int) - ref.astype(int)).mean() < 2.0


def view_matrices_first_projective(d, image):
    return onnx_spec.view_matrices(d, image.shape[1], image.shape[0])[1][0]


def test_a_broken_description_is_one_clear_line(exported, tmp_path):
    from augkit.errors import InputError
    from augkit.tta.inputs import RunError
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.json: not JSON"):
        onnx_spec.read_description(bad)
    with pytest.raises(InputError, match="cannot read"):
        onnx_spec.read_description(tmp_path / "missing.json")
    e = exported["regression"]
    d = json.loads(open(e.json).read())
    del d["tta"]["spec"]
    (tmp_path / "m.onnx").write_bytes(open(e.onnx_path, "rb").read())
    (tmp_path / "m.json").write_text(json.dumps(d))
    with pytest.raises(RunError, match="tta.spec"):
        load_onnx(tmp_path / "m.onnx", device="cpu")


def test_the_reference_takes_a_one_output_session_and_a_generator(exported):
    e = exported["regression"]
    d = onnx_spec.read_description(e.json)
    images = _images(3, seed=11)
    want = TTAPredictor(e.torch, e.spec).predict(images)
    from augkit.functional import warp
    res = onnx_spec.predict(d, iter(images), lambda b: (e.torch(b),), warp=lambda im, m, size: warp(im, m, size),
                            batch_size=4)
    assert "members" not in res and res["sigma"] is None
    assert np.abs(res["points"] - want.points).max() < TOL
