"""End to end: the demo, checkpoint contents and load_model, reproducibility, SIGKILL + --resume,
2-process gloo DDP, data runs with skips, CLI errors. Tiny model, tiny inputs, few images."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import augkit
from augkit.models.checkpoint import load_model, read_checkpoint
from augkit.cli.train import train as train_cmd
from augkit.train.loop import TrainConfig, run

FAST = ["--backbone", "tiny", "--size", "32", "--batch-size", "8", "--workers", "0", "--quiet", "--threads", "1"]
from helpers import YTF68  # noqa: E402


def _cli(args):
    r = CliRunner().invoke(train_cmd, args, catch_exceptions=False)
    return r


def _demo(tmp_path, name="run", extra=()):
    out = tmp_path / name
    r = _cli(FAST + ["--demo-train", "48", "--demo-val", "16", "--epochs", "2", "--out", str(out), *extra])
    assert r.exit_code == 0, r.output
    return out, r


def test_demo_end_to_end_and_run_folder(tmp_path):
    out, r = _demo(tmp_path)
    assert "done: 2 epochs" in r.output and "mean shape" in r.output
    for f in ("config.json", "log.csv", "log.jsonl", "curves.png", "last.pt", "best.pt", "summary.json"):
        assert (out / f).is_file(), f
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r_["epoch"] for r_ in rows] == [1, 2]
    for row in rows:
        assert row["base_nme"] > 0 and np.isfinite(row["nme"]) and 0 <= row["fr"] <= 1
    header = (out / "log.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "train_loss", "val_loss", "mse", "nme", "fr", "base_mse", "base_nme", "base_fr"} <= set(header)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["backbone"] == "tiny" and cfg["size"] == 32 and cfg["data"] is None


def test_checkpoint_contents_and_load_model(tmp_path):
    out, _ = _demo(tmp_path)
    ck = read_checkpoint(out / "last.pt")
    for key in ("model", "optimizer", "scheduler", "scaler", "epoch", "rng", "preprocessing", "scheme", "config",
                "model_info", "history", "global_step", "train_pipeline"):
        assert key in ck, key
    assert ck["epoch"] == 2 and ck["step_in_epoch"] == 0 and ck["model_info"]["n_points"] == 68
    assert ck["scheme"]["name"] == "ibug68" and ck["config"]["backbone"] == "tiny"
    assert [s["type"] for s in ck["preprocessing"]["steps"]] == ["ScaleMinSide", "CenterCrop"]
    assert "HFlip" in json.dumps(ck["train_pipeline"])
    assert ck["optimizer"]["state"], "optimiser moments are saved"
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")], "no temp files left behind"

    lm = load_model(out / "best.pt")
    assert lm.input_size == (32, 32) and lm.n_points == 68 and lm.device == torch.device("cpu")
    assert not lm.model.training and isinstance(lm.scheme, augkit.Scheme)
    assert lm.preprocess.deterministic
    from augkit.data.synthetic import make_face
    img, pts = make_face(np.random.default_rng(0))
    res = lm.preprocess(img)
    assert res.image.shape == (32, 32, 3)
    batch = np.stack([res.image, res.image])
    t = lm.to_tensor(batch)
    assert t.shape == (2, 3, 32, 32) and t.dtype == torch.float32
    out_t = lm.forward_tensor(t)
    assert isinstance(out_t, torch.Tensor) and out_t.shape == (2, 68, 2)
    y = lm(batch)
    assert y.dtype == np.float64 and y.shape == (2, 68, 2)
    np.testing.assert_allclose(y, out_t.numpy(), atol=1e-5)
    # the raw model output is the normalised convention: decode by hand and compare
    with torch.no_grad():
        raw = lm.model(t)
    np.testing.assert_allclose(y[0], (raw[0].reshape(68, 2).numpy() * 32 - 0.5), atol=1e-4)
    orig = lm.predict([img])
    np.testing.assert_allclose(orig[0], res.invert(y[0]), atol=1e-6)
    with pytest.raises(ValueError, match="preprocess"):
        lm.to_tensor(np.zeros((1, 40, 40, 3), np.uint8))


def test_same_seed_same_first_batches_and_weights(tmp_path):
    a, _ = _demo(tmp_path, "a", ["--epochs", "1"])
    b, _ = _demo(tmp_path, "b", ["--epochs", "1"])
    c, _ = _demo(tmp_path, "c", ["--epochs", "1", "--seed", "1"])
    wa, wb, wc = (read_checkpoint(p / "last.pt")["model"] for p in (a, b, c))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa if wa[k].is_floating_point())
    la = json.loads((a / "log.jsonl").read_text().splitlines()[0])
    lb = json.loads((b / "log.jsonl").read_text().splitlines()[0])
    assert la["train_loss"] == lb["train_loss"] and la["nme"] == lb["nme"]


def _cmd(*args):
    return [sys.executable, "-m", "augkit.cli.train", *FAST, *args]


def test_sigkill_mid_epoch_then_resume_finishes(tmp_path):
    out = tmp_path / "killed"
    args = ["--demo-train", "400", "--demo-val", "16", "--epochs", "2", "--checkpoint-steps", "3", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen(_cmd(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ck = out / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        if ck.is_file():
            try:
                c = read_checkpoint(ck)
            except Exception:
                c = None
            if c is not None and c["step_in_epoch"] >= 3:
                break
        time.sleep(0.05)
    assert p.poll() is None, "the run finished before it could be killed: " + p.stdout.read().decode()[-2000:]
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    killed = read_checkpoint(ck)
    assert killed["epoch"] < 2 and not (out / "summary.json").exists()
    step = killed["step_in_epoch"] + killed["epoch"] * 50
    r = subprocess.run(_cmd("--resume", str(out)), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    final = read_checkpoint(out / "last.pt")
    assert final["epoch"] == 2 and final["step_in_epoch"] == 0
    assert final["global_step"] == 2 * 50 and step < 100  # 400 images / 8 per batch = 50 steps per epoch
    assert [h["epoch"] for h in final["history"]] == [1, 2]
    assert json.loads((out / "summary.json").read_text())["epochs"] == 2


def test_resume_is_exact_after_an_epoch(tmp_path):
    # a constant LR after warm-up, so stopping at 1 of 2 epochs changes no schedule
    full, _ = _demo(tmp_path, "full", ["--epochs", "2", "--scheduler", "none"])
    part, _ = _demo(tmp_path, "part", ["--epochs", "1", "--scheduler", "none"])
    r = _cli(["--resume", str(part), "--epochs", "2", "--quiet"])
    assert r.exit_code == 0, r.output
    a, b = read_checkpoint(full / "last.pt")["model"], read_checkpoint(part / "last.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


@pytest.mark.parametrize("head", ["regression", "simcc"])
def test_ddp_two_processes_gloo(tmp_path, head):
    out = tmp_path / "ddp"
    r = subprocess.run(_cmd("--nproc", "2", "--demo-train", "32", "--demo-val", "12", "--epochs", "1", "--out", str(out),
                            "--head", head),
                       capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ck = read_checkpoint(out / "last.pt")
    assert ck["world"] == 2 and ck["epoch"] == 1 and ck["model_info"]["head"]["name"] == head
    assert ck["global_step"] == 2  # 32 images / 2 processes / 8 per batch
    row = ck["history"][0]
    assert np.isfinite(row["nme"]) and row["base_nme"] > 0
    assert (out / "curves.png").is_file() and (out / "best.pt").is_file()


def _competition(tmp_path, n=24):
    from augkit.data.synthetic import make_face
    import cv2
    (tmp_path / "images").mkdir(parents=True)
    rows = ["\t".join(["file_name"] + [f"Point_{i}_{a}" for i in range(68) for a in "XY"])]
    for i in range(n):
        img, pts = make_face(np.random.default_rng(i))
        name = f"Person_{i % 6}_{i}_a.jpg"
        cv2.imwrite(str(tmp_path / "images" / name), img[..., ::-1])
        rows.append(name + "\t" + "\t".join(f"{v:.2f}" for v in pts.reshape(-1)))
    rows.append("missing_1_a.jpg\t" + "\t".join(["1"] * 136))
    rows.append("Person_0_0_a.jpg\t" + "\t".join(["1"] * 135))
    (tmp_path / "images" / "broken_1_a.jpg").write_bytes(b"garbage")
    rows.append("broken_1_a.jpg\t" + "\t".join(["1"] * 136))
    (tmp_path / "landmarks.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_data_run_with_skips_person_split_and_strict(tmp_path):
    data = _competition(tmp_path / "data")
    out = tmp_path / "run"
    r = _cli(FAST + ["--data", str(data), "--epochs", "1", "--val-group", "person", "--val-fraction", "0.3",
                     "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "3 rows skipped" in r.output
    skipped = (out / "skipped.csv").read_text().splitlines()
    assert skipped[0] == "file,row,reason" and len(skipped) == 4
    assert any("missing_1_a.jpg" in s for s in skipped) and any("broken_1_a.jpg" in s for s in skipped)
    s = json.loads((out / "summary.json").read_text())
    assert s["train_images"] + s["val_images"] == 24 and s["skipped"] == 3
    r = CliRunner().invoke(train_cmd, FAST + ["--data", str(data), "--strict", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "landmarks.csv, line" in r.output


def test_cli_errors_are_clear(tmp_path):
    r = CliRunner().invoke(train_cmd, FAST + ["--data", str(tmp_path / "nope")])
    assert r.exit_code != 0 and "no such file or folder" in r.output
    r = CliRunner().invoke(train_cmd, FAST + ["--backbone", "resnet_fifty", "--demo-train", "8", "--out",
                                              str(tmp_path / "y")])
    assert r.exit_code != 0 and "unknown backbone" in r.output


def test_pretrained_offline_fails_clearly(monkeypatch):
    import torchvision
    from augkit.models.network import PretrainedUnavailable, build_model
    w = torchvision.models.get_model_weights("resnet18").DEFAULT

    def offline(*a, **k):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(type(w), "get_state_dict", offline)
    with pytest.raises(PretrainedUnavailable, match="offline.*--weights FILE"):
        build_model("resnet18", 68, pretrained=True)


def test_ytf68_slice_trains(tmp_path):
    if not (YTF68 / "train" / "landmarks.csv").is_file():
        pytest.skip(f"ytf68 not found at {YTF68}")
    out = tmp_path / "ytf"
    summary = run(TrainConfig(data=str(YTF68 / "train"), limit=40, backbone="tiny", size=32, epochs=1, batch_size=8,
                              workers=0, quiet=True, val_group="person", val_fraction=0.25, out=str(out), threads=1))
    assert summary["train_images"] + summary["val_images"] == 40 and summary["val_images"] >= 10
    last = summary["last"]
    assert last["base_mse"] > 0 and np.isfinite(last["mse"])


def test_aug_file_and_letterbox(tmp_path):
    aug = tmp_path / "aug.yaml"
    augkit.save(augkit.Compose([augkit.Affine(rotate=(-10, 10)), augkit.HFlip(p=0.5),
                                augkit.BrightnessContrast(brightness=(-0.1, 0.1))], scheme="ibug68"), aug)
    out, _ = _demo(tmp_path, "aug", ["--epochs", "1", "--aug", str(aug), "--preprocess", "letterbox"])
    ck = read_checkpoint(out / "last.pt")
    types = [s["type"] for s in ck["train_pipeline"]["steps"]]
    assert types == ["LetterBox", "Affine", "HFlip", "BrightnessContrast"]
    assert [s["type"] for s in ck["preprocessing"]["steps"]] == ["LetterBox"]
    assert load_model(out / "last.pt").preprocess.to_dict()["steps"] == ck["preprocessing"]["steps"]


@pytest.mark.parametrize("opts", [
    ["--optimizer", "sgd", "--scheduler", "onecycle", "--loss", "wing", "--trim", "0.2"],
    ["--optimizer", "adam", "--scheduler", "plateau", "--loss", "l1", "--clip", "0"],
    ["--scheduler", "cosine", "--restart-epochs", "1", "--loss", "mse", "--no-aug", "--val-fraction", "0"],
])
def test_optimiser_scheduler_loss_choices_run(tmp_path, opts):
    out, _ = _demo(tmp_path, "v", ["--epochs", "2", *opts])
    ck = read_checkpoint(out / "last.pt")
    assert ck["epoch"] == 2 and all(np.isfinite(h["train_loss"]) for h in ck["history"])
    lrs = [h["lr"] for h in ck["history"]]
    assert all(lr > 0 for lr in lrs)
