"""Landmark heads: encode -> decode round trips, σ that learns the noise, the registry's errors,
old checkpoints, and a checkpoint of every head through train / resume / --weights / predict /
evaluate / tta fit (tiny backbone, a few ytf68 images)."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

import augkit as ak  # noqa: E402
from augkit.cli import main  # noqa: E402
from augkit.presets import preprocess_steps  # noqa: E402
from augkit.models.checkpoint import load_model, read_checkpoint, save_checkpoint  # noqa: E402
from augkit.models.heads import HEADS, SIMCC_MARGIN, build_head, find_head  # noqa: E402
from augkit.models.network import build_model  # noqa: E402

SIZE = (64, 48)   # (h, w): not square, so the axes cannot be mixed up unnoticed


def _points(w, h):
    """Points inside, on the edges, near the edges and (a little) outside a w x h crop."""
    return torch.tensor([[[0.0, 0.0], [w - 1.0, h - 1.0], [w / 2 + 0.3, h / 3 - 0.7], [0.4, h - 1.6],
                          [-0.5, 10.0], [w - 0.5, 20.0], [-4.0, h + 3.0], [w + 5.0, -6.0]]], dtype=torch.float64)


def _head(name, k=8):
    features = 32 if not HEADS[name].spatial else (16, 4, 3)
    return build_head(name, features, k, SIZE)


@pytest.mark.parametrize("name", ["regression", "rle", "simcc"])
def test_encode_decode_round_trip_is_exact_inside_and_outside_the_crop(name):
    h, w = SIZE
    pts = _points(w, h)
    head = _head(name)
    back, sigma = head.decode(head.encode(pts, 1.5).float())
    np.testing.assert_allclose(back.double().numpy(), pts.numpy(), atol=2e-3)
    if name == "rle":
        np.testing.assert_allclose(sigma.numpy(), 1.5, rtol=1e-5)


def test_simcc_reaches_its_margin_beyond_the_crop():
    h, w = SIZE
    head = _head("simcc")
    far = torch.tensor([[[-SIMCC_MARGIN * w + 2, (1 + SIMCC_MARGIN) * h - 3]]], dtype=torch.float64)
    back, _ = head.decode(head.encode(far.expand(1, 8, 2).contiguous()).float())
    np.testing.assert_allclose(back[0, 0].numpy(), far[0, 0].numpy(), atol=2e-3)


def test_integral_round_trip_is_exact_in_the_crop_and_clamps_outside():
    h, w = SIZE
    pts = _points(w, h)
    head = _head("integral")
    back, sigma = head.decode(head.encode(pts))
    back = back.double().numpy()
    # the heatmap's support is the crop, from edge to edge: u in [0, 1], x in [-0.5, w - 0.5]
    expected = np.stack([np.clip(pts[..., 0].numpy(), -0.5, w - 0.5), np.clip(pts[..., 1].numpy(), -0.5, h - 0.5)], -1)
    np.testing.assert_allclose(back, expected, atol=2e-3)
    assert sigma.shape == (1, 8) and torch.isfinite(sigma).all()


@pytest.mark.parametrize("name", list(HEADS))
def test_every_head_trains_under_its_loss_and_decodes_shapes(name):
    torch.manual_seed(0)
    model = build_model("tiny", 5, head=name, input_size=(32, 32), mean_shape=np.full((5, 2), 0.5))
    head = find_head(model)
    out = model(torch.randn(4, 3, 32, 32))
    target = torch.rand(4, 5, 2)
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[0, 1] = False
    target[1, 2] = float("nan")   # a missing label counts nothing and gives no NaN gradient
    loss = head.loss(out, target, mask, 0.25)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    pts, sigma = head.decode(out)
    assert pts.shape == (4, 5, 2)
    assert (sigma is None) == (not head.has_sigma)
    if sigma is not None:
        assert sigma.shape == (4, 5) and (sigma > 0).all()


@pytest.mark.parametrize("name", list(HEADS))
def test_every_head_under_bf16_autocast_and_channels_last_matches_float32(name):
    torch.manual_seed(0)
    model = build_model("tiny", 5, head=name, input_size=(32, 32)).eval()
    head = find_head(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref, _ = head.decode(model(x))
        cl = model.to(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = cl(x.to(memory_format=torch.channels_last))
        pts, sigma = head.decode(out)
    assert pts.dtype == torch.float32 and torch.isfinite(pts).all()
    assert (pts - ref).abs().max() < 0.5            # input pixels of a 32 px crop: bf16 features, fp32 decoding
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = head.loss(model(x), torch.rand(2, 5, 2), torch.ones(2, 5, dtype=torch.bool), 0.0)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


@pytest.mark.parametrize("name", ["integral", "simcc"])
def test_spatial_heads_sit_on_a_timm_trunk_and_freeze_leaves_only_the_head_training(name):
    pytest.importorskip("timm")
    from augkit.train.freeze import set_frozen, train_mode
    torch.manual_seed(0)
    model = build_model("timm/resnet18", 7, head=name, input_size=(64, 64))
    head = find_head(model)
    assert head.spatial and head.name == name
    set_frozen(model, True)
    train_mode(model, True)
    out = model(torch.randn(2, 3, 64, 64))
    head.loss(out, torch.rand(2, 7, 2), torch.ones(2, 7, dtype=torch.bool), 0.0).backward()
    own = {id(p) for p in head.parameters()}
    grads = {id(p): p.grad is not None for p in model.parameters()}
    assert all(grads[i] for i in own)                                   # the head (and its neck) learn
    assert not any(g for i, g in grads.items() if i not in own)         # the timm backbone does not
    assert not model.trunk.training and head.training
    pts, sigma = head.decode(out)
    assert pts.shape == (2, 7, 2) and sigma.shape == (2, 7)


def test_a_spatial_head_trains_with_ema_and_freeze_epochs_from_the_command_line(ytf68, tmp_path):
    out = tmp_path / "ema"
    _train(["--data", str(ytf68 / "train"), "--limit", "24", "--head", "simcc", "--epochs", "2",
            "--freeze-epochs", "1", "--ema", "0.9", "--out", str(out)])
    ck = read_checkpoint(out / "last.pt")
    assert ck["model_info"]["head"]["name"] == "simcc" and ck.get("ema") is not None
    m = load_model(out / "best.pt")
    pts, sigma = m.call_with_sigma(np.zeros((1, 32, 32, 3), dtype=np.uint8))
    assert pts.shape == (1, 68, 2) and sigma.shape == (1, 68) and np.isfinite(sigma).all()


@pytest.mark.parametrize("dist", ["laplace", "gaussian"])
def test_rle_sigma_learns_the_ratio_of_two_noise_levels(dist):
    """Two groups of samples, labels around a fixed point with noise 1 px and 4 px: the head learns
    σ for each group in their ratio (within 30%)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    head = build_head("rle", 2, 3, (64, 64), {"rle_dist": dist})
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    noise = np.array([1.0, 4.0])
    for _ in range(600):
        g = rng.integers(0, 2, 256)
        feats = torch.tensor(np.eye(2)[g], dtype=torch.float32)
        d = rng.laplace(size=(256, 3, 2)) / np.sqrt(2) if dist == "laplace" else rng.normal(size=(256, 3, 2))
        pts = 32 + noise[g][:, None, None] * d
        target = ((torch.tensor(pts) + 0.5) / 64).float()
        loss = head.loss(head(feats), target, None)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        _, sigma = head.decode(head(torch.eye(2)))
    ratio = float(sigma[1].mean() / sigma[0].mean())
    assert 4.0 / 1.3 < ratio < 4.0 * 1.3, (ratio, sigma)
    assert 0.7 < float(sigma[0].mean()) < 1.3, sigma


def test_unknown_head_and_setting_out_of_range_are_one_line(tmp_path):
    from augkit.cli.train import train as train_cmd
    res = CliRunner().invoke(train_cmd, ["--head", "heatmapp", "--out", str(tmp_path / "a")])
    assert res.exit_code == 2 and "'heatmapp' is not one of" in res.output
    res = CliRunner().invoke(train_cmd, ["--head", "simcc", "--simcc-ratio", "9", "--out", str(tmp_path / "b")])
    assert res.exit_code == 2 and "--simcc-ratio" in res.output and "1.0<=x<=4.0" in res.output.replace(" ", "")
    res = CliRunner().invoke(train_cmd, ["--head", "integral", "--heatmap-stride", "6", "--backbone", "tiny",
                                         "--out", str(tmp_path / "c")])
    assert res.exit_code != 0 and "--heatmap-stride must be 4, 8 or 16, got 6" in res.output
    with pytest.raises(ValueError, match="--head must be one of regression, rle, integral, simcc"):
        build_model("tiny", 5, head="dsnt")


FAST = ["--backbone", "tiny", "--size", "32", "--batch-size", "8", "--workers", "0", "--quiet", "--threads", "1",
        "--scheduler", "none"]


def _train(args):
    from augkit.cli.train import train as train_cmd
    res = CliRunner().invoke(train_cmd, FAST + args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res


@pytest.fixture(scope="module", params=list(HEADS))
def trained(request, ytf68, tmp_path_factory):
    """A 2-epoch run and a 1-epoch run resumed to 2 epochs, of each head, on 40 ytf68 images."""
    name = request.param
    root = tmp_path_factory.mktemp(f"head_{name}")
    data = ["--data", str(ytf68 / "train"), "--limit", "40", "--head", name]
    _train(data + ["--epochs", "2", "--out", str(root / "full")])
    _train(data + ["--epochs", "1", "--out", str(root / "part")])
    _train(["--resume", str(root / "part"), "--epochs", "2"])
    return name, root


def test_every_head_resumes_bit_exactly_and_records_itself(trained):
    name, root = trained
    a, b = read_checkpoint(root / "full" / "last.pt"), read_checkpoint(root / "part" / "last.pt")
    assert a["model_info"]["head"]["name"] == name
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)
    m = load_model(root / "full" / "best.pt")
    assert m.head.name == name and m.has_sigma == HEADS[name].has_sigma


def test_every_head_starts_from_weights(trained, ytf68, tmp_path):
    name, root = trained
    _train(["--data", str(ytf68 / "train"), "--limit", "24", "--head", name, "--epochs", "1",
            "--weights", str(root / "full" / "best.pt"), "--out", str(tmp_path / "w")])
    src, dst = read_checkpoint(root / "full" / "best.pt")["model"], torch.load(tmp_path / "w" / "last.pt")["model"]
    first = next(k for k in src if k.endswith("weight") and src[k].ndim == 4)
    assert first in dst   # the backbone's names are the same, so --weights loaded it (then it trained on)


def test_every_head_predicts_evaluates_and_fits(trained, ytf68, tmp_path):
    name, root = trained
    ck = str(root / "full" / "best.pt")
    run = CliRunner()
    sub = tmp_path / "sub.csv"
    res = run.invoke(main, ["predict", "--checkpoint", ck, "--data", str(ytf68 / "test"), "--tta", "flip",
                            "--out", str(sub), "--workers", "0"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert len(sub.read_text().splitlines()) > 10
    res = run.invoke(main, ["evaluate", "--checkpoint", ck, "--data", str(ytf68 / "train"), "--limit", "16",
                            "--tta", "none", "--tta", "flip", "--workers", "0", "--json", str(tmp_path / "e.json"),
                            "--png", str(tmp_path / "worst.png")],
                     catch_exceptions=False)
    assert res.exit_code == 0, res.output
    ev = res
    res = run.invoke(main, ["tta", "fit", "--checkpoint", ck, "--data", str(ytf68 / "train"), "--limit", "16",
                            "--tta", "flip", "--out", str(tmp_path / "tta.yaml"), "--workers", "0"],
                     catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "tta.yaml").is_file()
    assert ("model sigma calibration" in ev.output) == HEADS[name].has_sigma
    if not HEADS[name].has_sigma:
        return
    # a head with σ: its calibration in evaluate, σ columns in predict, --calibrate in tta fit
    report = json.loads((tmp_path / "e.json").read_text())
    cal = report["results"][0]["calibration"]
    assert 0.0 <= cal["coverage_1"] <= cal["coverage_2"] <= 1.0 and cal["scale"] > 0
    assert (tmp_path / "calibration.png").stat().st_size > 1000
    pts = tmp_path / "pts.csv"
    res = run.invoke(main, ["predict", "--checkpoint", ck, "--data", str(ytf68 / "test"), "--tta", "flip",
                            "--out", str(pts), "--format", "csv", "--uncertainty", "--workers", "0"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    head, row = pts.read_text().splitlines()[:2]
    cols = head.split(",")
    assert cols[-1] == "Point_67_SIGMA" and cols.index("Point_0_SIGMA") == cols.index("Point_67_S") + 1
    sig = np.array(row.split(",")[cols.index("Point_0_SIGMA"):], dtype=float)
    assert sig.shape == (68,) and (sig > 0).all() and np.isfinite(sig).all()
    res = run.invoke(main, ["tta", "fit", "--checkpoint", ck, "--data", str(ytf68 / "train"), "--limit", "16",
                            "--tta", "flip", "--out", str(tmp_path / "cal.yaml"), "--workers", "0", "--calibrate"],
                     catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "σ calibration: sigma_scale" in res.output and "sigma+robust" in res.output
    from augkit.tta import load_spec
    assert load_spec(tmp_path / "cal.yaml").sigma_scale != 1.0


def test_a_checkpoint_without_a_head_loads_as_regression(tmp_path):
    torch.manual_seed(0)
    model = build_model("tiny", 68, input_size=(32, 32))
    ck = {"model": model.state_dict(), "scheme": "ibug68", "config": {},
          "preprocessing": ak.Compose(preprocess_steps(32)).to_dict(),
          "model_info": {"backbone": "tiny", "n_points": 68, "input_size": [32, 32]}}
    save_checkpoint(tmp_path / "old.pt", ck)
    m = load_model(tmp_path / "old.pt")
    assert m.head.name == "regression" and not m.has_sigma
    x = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    pts, sigma = m.call_with_sigma(x)
    assert sigma is None
    with torch.no_grad():
        raw = model.eval()(m.to_tensor(x))
    np.testing.assert_allclose(pts, (raw.reshape(2, 68, 2) * 32 - 0.5).numpy(), atol=1e-5)
