"""The one model input (training Engine, checkpoint LandmarkModel, TTA TorchCallable), the
validation/inference preprocessing carrying the --aug file's warp options, and the small helpers
(worker count, header sizes) that had two definitions."""

import os
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from augkit.train import builders
from augkit.models.checkpoint import LandmarkModel, load_model, read_checkpoint
from augkit.train.loop import Engine, TrainConfig, run
from augkit.models.network import IMAGENET_MEAN, IMAGENET_STD, TinyNet, decode
from augkit.models.model_input import ModelInput, autocast_dtype, normalise, pick_device
from augkit.tta import TorchCallable, TTAPredictor

import augkit as ak
from augkit.io import image_size
from augkit.presets import (
    WARP_OPTIONS,
    preprocess_pipeline,
    preprocess_steps,
    warp_options,
)

K = 5
SIZE = 32


def _net():
    torch.manual_seed(0)
    return TinyNet(2 * K, width=4).eval()


def _batch(n=3, size=SIZE, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _reference_input(batch):
    """What Engine.forward and LandmarkModel.to_tensor computed before they shared ModelInput."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    return ((torch.from_numpy(batch).permute(0, 3, 1, 2).float() - mean) / std).contiguous()


# ------------------------------------------------------------------------- one model input

def test_training_checkpoint_and_tta_paths_give_the_same_input_and_output():
    net, batch = _net(), _batch()
    engine = Engine(net, net, torch.device("cpu"), None, False, K, SIZE, "mse")
    lm = LandmarkModel(net, ak.Compose(preprocess_steps(SIZE)), None, (SIZE, SIZE), torch.device("cpu"), K)
    tc = TorchCallable(net)
    ref = _reference_input(batch)
    x_train = engine.input.prepare(torch.from_numpy(batch))
    x_ckpt = lm.to_tensor(batch)
    x_tta = tc.input.prepare(batch)
    for x in (x_train, x_ckpt, x_tta):
        assert x.dtype == torch.float32 and x.shape == (3, 3, SIZE, SIZE)
        assert torch.equal(x, ref)                       # bit-identical, not merely close
    with torch.no_grad():
        raw = engine.forward(net, torch.from_numpy(batch))
    assert raw.shape == (3, 2 * K) and raw.dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(raw, net(ref))
    assert torch.equal(lm.forward_tensor(x_ckpt), decode(raw, (SIZE, SIZE)))
    np.testing.assert_array_equal(lm(batch), decode(raw, (SIZE, SIZE)).numpy().astype(np.float64))
    out_tta = tc(batch)
    assert out_tta.shape == (3, K, 2)
    np.testing.assert_array_equal(out_tta, raw.reshape(3, K, 2).numpy())


def test_torch_callable_normalisation_moved_by_at_most_float_rounding():
    """TorchCallable used to scale to [0, 1] first; the shared formula differs only in rounding."""
    batch = _batch()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    old = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div(255.0).sub(mean).div(std)
    new = TorchCallable(_net()).input.prepare(batch)
    assert float((old - new).abs().max()) < 1e-5


def test_custom_statistics_and_device_of_torch_callable():
    tc = TorchCallable(_net(), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = tc.input.prepare(np.full((1, 4, 4, 3), 255, np.uint8))
    assert torch.allclose(x, torch.full((1, 3, 4, 4), 2.0))
    assert tc.device == torch.device("cpu") and next(tc.module.parameters()).device.type == "cpu"
    assert not tc.module.training


def test_prepare_checks_shapes_with_one_clear_message():
    mi = ModelInput("cpu", input_size=(SIZE, SIZE))
    assert mi.prepare(_batch(1)[0]).shape == (1, 3, SIZE, SIZE)      # one image gets its batch axis
    with pytest.raises(ValueError, match=r"uint8 \(N, H, W, 3\), got shape \(2, 3, 32, 32\)"):
        mi.prepare(np.zeros((2, 3, SIZE, SIZE), np.uint8))           # NCHW given by mistake
    with pytest.raises(ValueError, match=r"images are \(40, 40\) \(h, w\); the model takes \(32, 32\)"):
        mi.prepare(np.zeros((1, 40, 40, 3), np.uint8))
    with pytest.raises(ValueError, match="one per channel"):
        ModelInput("cpu", mean=(0.5, 0.5), std=(0.2, 0.2, 0.2))
    assert ModelInput("cpu").prepare(np.zeros((1, 40, 40, 3), np.uint8)).shape == (1, 3, 40, 40)  # no size set


def test_channels_last_changes_the_memory_format_not_the_values():
    batch = _batch()
    a = ModelInput("cpu").prepare(batch)
    b = ModelInput("cpu", channels_last=True).prepare(batch)
    assert b.is_contiguous(memory_format=torch.channels_last) and not a.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(a, b)
    t = torch.from_numpy(batch)
    assert torch.equal(normalise(t, ModelInput("cpu").mean_px, ModelInput("cpu").std_px), a)


def test_run_casts_autocast_output_to_float32():
    net, batch = _net(), _batch()
    mi = ModelInput("cpu", amp_dtype=torch.bfloat16)
    with torch.no_grad():
        out = mi(net, batch)
        plain = ModelInput("cpu")(net, batch)
    assert out.dtype == torch.float32 and out.shape == plain.shape
    assert float((out - plain).abs().max()) < 0.1                    # bf16 rounding only


def test_device_and_precision_choice():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(None) == pick_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for amp in ("auto", "bf16", "fp16", "off"):
        assert autocast_dtype(torch.device("cpu"), amp) is None
    with pytest.raises(ValueError, match="amp must be auto, bf16, fp16 or off"):
        autocast_dtype(torch.device("cpu"), "fp8")
    mi = ModelInput.for_inference("cpu")
    assert mi.amp_dtype is None and not mi.channels_last and not mi.pin
    lm = LandmarkModel(_net(), ak.Compose([]), None, (SIZE, SIZE), torch.device("cpu"), K)
    assert lm.amp_dtype is None and lm.channels_last is False and lm.input.input_size == (SIZE, SIZE)
    lm.amp_dtype = torch.bfloat16                     # settable (benchmarks/gpu_check.py compares with float32)
    assert lm.input.amp_dtype is torch.bfloat16 and lm(_batch()).dtype == np.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_paths_agree():  # pragma: no cover - GPU only
    net, batch = _net(), _batch()
    dev = torch.device("cuda")
    engine = Engine(net.to(dev), net, dev, None, True, K, SIZE, "mse")
    lm = LandmarkModel(net, ak.Compose([]), None, (SIZE, SIZE), dev, K)
    lm.amp_dtype = None
    tc = TorchCallable(net, device="cuda", channels_last=True)
    x = [engine.input.prepare(torch.from_numpy(batch)), lm.to_tensor(batch), tc.input.prepare(batch)]
    assert all(torch.equal(x[0], y) for y in x[1:]) and x[0].is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        raw = engine.forward(net, torch.from_numpy(batch))
    np.testing.assert_array_equal(tc(batch), raw.reshape(3, K, 2).cpu().numpy())


# ------------------------------------------------ validation / inference preprocessing

def _aug_file(tmp_path, **warp):
    pipe = ak.Compose([ak.BrightnessContrast(brightness=0.0, contrast=1.0)], **warp)  # no change to pixels
    path = tmp_path / "aug.yaml"
    ak.save(pipe, path)
    return str(path)


def _wide_image():
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :, 0] = np.arange(40, dtype=np.uint8)[None] * 5 + 40     # a horizontal ramp, so reflect shows
    img[:, :, 1] = np.arange(20, dtype=np.uint8)[:, None] * 9 + 30
    img[:, :, 2] = 90
    return img


@pytest.mark.parametrize("warp", [{"border_mode": "constant", "fill": 200},
                                  {"border_mode": "constant", "fill": [10, 200, 60]},
                                  {"border_mode": "reflect"},
                                  {"border_mode": "replicate", "interpolation": "cubic"}])
def test_letterbox_padding_of_validation_and_prediction_matches_training(tmp_path, warp):
    cfg = SimpleNamespace(size=SIZE, preprocess="letterbox", no_aug=False, aug=_aug_file(tmp_path, **warp))
    pre, aug, opts = builders.pipelines(cfg)
    assert {k: opts[k] for k in warp} == {k: tuple(v) if isinstance(v, list) else v for k, v in warp.items()}
    train_pipe = ak.Compose(pre + aug, **opts)
    img = _wide_image()
    trained = train_pipe(img, rng=np.random.default_rng(0)).image
    assert trained.shape == (SIZE, SIZE, 3)
    pad = np.zeros((SIZE, SIZE), bool)
    pad[:8], pad[-8:] = True, True                                      # 40x20 -> 32x16, 8 rows above and below
    # the mismatch: preprocessing built without the --aug file's options pads differently
    old_val = ak.Compose(pre)(img).image
    assert not np.array_equal(old_val[pad], trained[pad])
    # validation (and so the checkpoint's stored preprocess) now pads as training did
    val_pipe = builders.eval_pipeline(cfg, None, opts)
    np.testing.assert_array_equal(val_pipe(img).image, trained)
    # the checkpoint round trip keeps it, and predict feeds the model that very image
    stored = ak.Compose.from_dict(val_pipe.to_dict())
    assert warp_options(stored) == warp_options(val_pipe)
    seen = []

    def model(batch):
        seen.append(np.array(batch))
        return np.zeros((len(batch), K, 2))

    TTAPredictor(model, "none", preprocess=stored).predict([img])
    np.testing.assert_array_equal(seen[0][0], trained)


def test_default_augmentation_keeps_the_default_warp(tmp_path):
    cfg = SimpleNamespace(size=SIZE, preprocess="letterbox", no_aug=False, aug=None)
    pre, _, opts = builders.pipelines(cfg)
    assert opts == {}
    assert builders.eval_pipeline(cfg, "ibug68", opts).to_dict() == ak.Compose(pre, scheme="ibug68").to_dict()
    assert warp_options(None) == {}
    assert set(warp_options(ak.Compose([]))) == set(WARP_OPTIONS)
    with pytest.raises(TypeError, match="unknown warp options"):
        preprocess_pipeline(SIZE, "crop", preshrink=0.3)


def test_a_trained_checkpoint_carries_the_aug_files_border_and_fill(tmp_path):
    aug = _aug_file(tmp_path, border_mode="constant", fill=[200, 10, 10])
    cfg = TrainConfig(backbone="tiny", size=SIZE, epochs=1, batch_size=8, demo_train=16, demo_val=8, workers=0,
                      quiet=True, threads=1, preprocess="letterbox", aug=aug, out=str(tmp_path / "run"))
    run(cfg)
    ck = read_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["preprocessing"]["fill"] == [200.0, 10.0, 10.0]
    lm = load_model(tmp_path / "run")
    assert lm.preprocess.border_mode == "constant" and tuple(lm.preprocess.fill) == (200.0, 10.0, 10.0)
    img = _wide_image()
    top = lm.preprocess(img).image[:8]
    assert (top == np.array([200, 10, 10], np.uint8)).all()


# ------------------------------------------------------------- one definition of each helper

def test_one_default_worker_count(monkeypatch):
    from augkit.train import data as D
    from augkit.tta import predictor as P

    import augkit.workers as W
    assert D.default_workers is W.default_workers and P.default_workers.func is W.default_workers
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert W.default_workers() == 31 and P.default_workers() == P.TTA_MAX_WORKERS == 8
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert W.default_workers(cap=8) == P.default_workers() == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert P.default_workers() == 0


def test_header_sizes_are_width_height_like_image_size(tmp_path):
    from augkit.tta import sources as P   # ViewSource and the header sizes live here
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), np.zeros((40, 50, 3), np.uint8))          # h=40, w=50
    assert P._header_wh(str(path)) == image_size(path) == (50, 40)
    assert P._header_wh(np.zeros((4, 4, 3), np.uint8)) is None
    assert not hasattr(P, "header_size")
    src = P.ViewSource([str(path), str(tmp_path / "missing.jpg")], [[ak.Compose([])]], fallback="grey")
    assert src.fallback_size(0) == (40, 50)                           # an array shape: (h, w)
    assert src[1]["views"][0].shape == (1, 40, 50, 3)
    none = P.ViewSource([str(tmp_path / "missing.jpg")], [[ak.Compose([])]], fallback="grey", input_size=(30, 20))
    assert none.fallback_size(0) == (30, 20)                          # input_size is (h, w) too
