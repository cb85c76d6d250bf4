"""The training recipes of issue 15: the LR range test (--lr-find, --lr auto), TensorBoard event
files, the EMA weight average (--ema), the frozen warm-up (--freeze-epochs) and timm backbones.
Tiny models, tiny images, a few steps each."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from augkit.models.checkpoint import load_model, read_checkpoint
from augkit.cli.train import train as train_cmd
from augkit.train.lr_find import sweep

FAST = ["--backbone", "tiny", "--size", "32", "--batch-size", "8", "--workers", "0", "--quiet", "--threads", "1"]
DEMO = ["--demo-train", "48", "--demo-val", "16"]


def _cli(args, ok=True):
    r = CliRunner().invoke(train_cmd, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert r.exit_code == 0, r.output
    return r


def _state(path):
    return read_checkpoint(path)


def _equal_dicts(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------ LR range test

def _regression(kind: str):
    """(make model + optimiser, step factory, full-data loss) of a noisy regression problem."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 16, generator=g)
    y = x @ torch.randn(16, 1, generator=g) + 0.3 * torch.randn(2048, 1, generator=g)

    def make():
        torch.manual_seed(0)
        if kind == "linear-sgd":
            m = torch.nn.Linear(16, 1)
            return m, torch.optim.SGD(m.parameters(), lr=1.0)
        m = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
        return m, torch.optim.AdamW(m.parameters(), lr=1.0)

    def stepper(m, opt, seed):
        gen = torch.Generator().manual_seed(seed)

        def step(lr):
            for group in opt.param_groups:
                group["lr"] = lr
            i = torch.randint(0, len(x), (32,), generator=gen)
            loss = torch.nn.functional.mse_loss(m(x[i]), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            return float(loss.detach())
        return step

    def full_loss(m):
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(m(x), y))
    return make, stepper, full_loss


@pytest.mark.parametrize("kind,steps", [("linear-sgd", 30), ("mlp-adamw", 50)])
def test_lr_sweep_suggestion_within_3x_of_the_best_lr_of_a_grid(kind, steps):
    """The known good LR is measured: the best of a grid of short cosine trainings (for the linear
    problem SGD's theory agrees: the Hessian is 2I, so it diverges above LR 1)."""
    make, stepper, full_loss = _regression(kind)
    grid = np.geomspace(1e-3, 3, 19)
    finals = []
    for lr in grid:
        m, opt = make()
        step = stepper(m, opt, 1)
        for s in range(steps):
            step(lr * 0.5 * (1 + np.cos(np.pi * s / steps)))
        finals.append(full_loss(m))
    finals = np.where(np.isfinite(finals), finals, np.inf)
    best = grid[int(np.argmin(finals))]
    m, opt = make()
    res = sweep(stepper(m, opt, 2), 100)
    assert np.isfinite(res.suggestion), res.stopped
    assert best / 3 <= res.suggestion <= best * 3, (res.suggestion, best)
    assert res.stopped and len(res.losses) < 100  # it stopped once the loss diverged
    assert res.shape == "valley" and res.suggestion == pytest.approx(res.edge_lr / 10)


def test_lr_find_writes_plot_and_json_and_no_checkpoint(tmp_path):
    out = tmp_path / "sweep"
    r = _cli(FAST + ["--demo-train", "96", "--demo-val", "8", "--lr-find", "--lr-find-steps", "40", "--out", out])
    lines = [ln for ln in r.output.splitlines() if ln.startswith("lr-find:")]
    assert len(lines) == 1 and "suggested peak LR" in lines[0], r.output
    found = json.loads((out / "lr_find.json").read_text())
    assert float(lines[0].split("suggested peak LR ")[1].split()[0]) == pytest.approx(found["suggested_lr"], rel=1e-2)
    assert 1e-6 < found["suggested_lr"] < 1 and len(found["lr"]) == len(found["loss"]) <= 40
    assert found["lr"] == sorted(found["lr"]) and found["lr"][-1] / found["lr"][0] > 1e3
    assert (out / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in out.iterdir()) == ["lr_find.json", "lr_find.png"]  # no .pt, no config
    r = _cli(["--resume", out, "--quiet"], ok=False)
    assert r.exit_code != 0 and "no last.pt" in r.output


def test_a_flat_curve_that_ends_in_nan_still_gets_its_edge():
    """The smoothed average skips NaN: a loss that is flat and then not finite must still show the
    divergence (not "the loss never turned up")."""
    res = sweep(lambda lr: 1.0 + 0.001 * np.sin(lr * 1e7) if lr < 1e-2 else float("nan"), 60)
    assert res.stopped.startswith("the loss became nan")
    assert res.shape == "flat" and np.isfinite(res.suggestion) and 1e-3 < res.edge_lr <= 1.5e-2


# the best peak LR of `augkit train` at benchmarks/recipes.py's settings, measured by a grid of its default row:
#   python benchmarks/recipes.py --rows default --lr X --out runs/recipes_lr/X  (X = 3e-4, 1e-3, 3e-3; seeds 0, 1)
RECIPES_BEST_LR = 1e-3


@pytest.mark.slow
def test_lr_find_on_ytf68_lands_within_3x_of_the_lr_that_trains_best(ytf68, tmp_path):
    """The flat-then-rising curve of a head that starts at the mean shape, on real faces with the
    recipes benchmark's model, size, batch and sweep length (resnet18 at 64 px, 60 steps)."""
    out = tmp_path / "sweep"
    _cli(["--data", ytf68 / "train", "--limit", "1000", "--val-group", "person", "--size", "64", "--batch-size", "16",
          "--backbone", "resnet18", "--workers", "0", "--quiet", "--seed", "0", "--lr-find", "--lr-find-steps", "60",
          "--out", out])
    found = json.loads((out / "lr_find.json").read_text())
    assert found["shape"] == "flat", found["rule"]
    assert RECIPES_BEST_LR / 3 <= found["suggested_lr"] <= RECIPES_BEST_LR * 3, found["suggested_lr"]


def test_lr_auto_trains_at_the_suggestion_exactly_as_if_given(tmp_path):
    """The sweep is undone: --lr auto trains bit for bit like --lr <its suggestion>."""
    auto = tmp_path / "auto"
    _cli(FAST + DEMO + ["--epochs", "1", "--lr", "auto", "--lr-find-steps", "40", "--out", auto])
    found = json.loads((auto / "lr_find.json").read_text())["suggested_lr"]
    cfg = json.loads((auto / "config.json").read_text())
    assert cfg["lr"] == found
    given = tmp_path / "given"
    _cli(FAST + DEMO + ["--epochs", "1", "--lr", repr(found), "--out", given])
    assert _equal_dicts(_state(auto / "last.pt")["model"], _state(given / "last.pt")["model"])


# -------------------------------------------------------------------------------- TensorBoard

def test_tensorboard_event_files_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out = tmp_path / "tb"
    _cli(FAST + DEMO + ["--epochs", "2", "--tensorboard", "--out", out])
    assert list(out.glob("events.out.tfevents.*"))
    ea = EventAccumulator(str(out), size_guidance={"scalars": 0, "images": 0})
    ea.Reload()
    tags = ea.Tags()
    steps = 2 * 6  # 48 images / batch 8, two epochs
    assert [e.step for e in ea.Scalars("train/loss")] == list(range(steps))
    assert all(np.isfinite(e.value) for e in ea.Scalars("train/loss"))
    lrs = [e.value for e in ea.Scalars("train/lr")]
    assert len(lrs) == steps and max(lrs) == pytest.approx(2e-3, rel=1e-6)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    for name in ("mse", "nme", "fr"):
        assert [e.value for e in ea.Scalars(f"val/{name}")] == pytest.approx([h[name] for h in log], rel=1e-6)
        assert [e.value for e in ea.Scalars(f"baseline/{name}")] == pytest.approx([h[f"base_{name}"] for h in log])
    assert set(tags["images"]) == {"val/worst", "train/augmented"}
    worst = ea.Images("val/worst")
    assert len(worst) == 2 and worst[0].encoded_image_string[:4] == b"\x89PNG"
    import cv2  # the last epoch's grid is the picture of worst.png, pixel for pixel
    shown = cv2.imdecode(np.frombuffer(worst[-1].encoded_image_string, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(shown, cv2.imread(str(out / "worst.png"), cv2.IMREAD_COLOR))
    assert len(ea.Images("train/augmented")) == 1 and ea.Images("train/augmented")[0].width > 32


def test_tensorboard_missing_is_a_one_line_error_naming_the_extra(tmp_path):
    code = ("import sys; sys.modules['tensorboard'] = None\n"
            "from augkit.cli.train import train\n"
            f"train(['--tensorboard', '--out', {str(tmp_path / 'x')!r}, '--backbone', 'tiny'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "[tb]" in err[0] and "pip install" in err[0], r.stderr
    assert not (tmp_path / "x").exists()


# -------------------------------------------------------------------------------------- EMA

def test_ema_equals_the_hand_computed_average_after_three_steps():
    from types import SimpleNamespace

    from augkit.models.network import TinyNet
    from augkit.train.dist import Dist
    from augkit.train.ema import EMA
    from augkit.train.epoch import Engine, StopRule, train_one_epoch
    from augkit.train.schedule import LRSchedule
    from augkit.train.state import TrainState
    torch.manual_seed(0)
    model = TinyNet(8, width=4)
    decay = 0.7
    engine = Engine(model, model, torch.device("cpu"), None, False, 4, 16, "mse")
    state = TrainState(model, torch.optim.SGD(model.parameters(), lr=0.05), LRSchedule("none", 0.05, 3, 1),
                       torch.amp.GradScaler("cuda", enabled=False))
    trainer = SimpleNamespace(cfg=SimpleNamespace(ema=decay), state=state, engine=engine)  # what the hook reads
    ema = EMA()
    ema.setup(trainer)
    g = torch.Generator().manual_seed(1)
    batches = [{"image": torch.randint(0, 255, (4, 16, 16, 3), dtype=torch.uint8, generator=g),
                "target": torch.rand(4, 4, 2, generator=g), "mask": torch.ones(4, 4, dtype=torch.bool),
                "index": torch.arange(4)} for _ in range(3)]
    seen = []   # the trained weights (parameters and BatchNorm statistics) after each step
    def on_step(loss, lr):   # the trainer's step hooks: the EMA update
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        ema.step(trainer, loss, lr)

    train_one_epoch(state, engine, batches, 0, 3, StopRule(Dist(), None), lambda: None, {}, on_step=on_step)
    assert len(seen) == 3
    got = state.ema.module.state_dict()
    checked = 0
    for k, v in got.items():
        if not v.is_floating_point():
            continue
        hand = seen[0][k].double()                      # the first update copies the weights
        for later in seen[1:]:
            hand = decay * hand + (1 - decay) * later[k].double()
        torch.testing.assert_close(v.double(), hand, rtol=1e-5, atol=1e-6)
        checked += 1
    assert checked == len([v for v in got.values() if v.is_floating_point()]) and "features.1.running_mean" in got
    assert not torch.equal(got["fc.weight"], seen[-1]["fc.weight"])   # an average, not the last weights
    assert int(state.ema.n_averaged) == 3


def test_ema_checkpoints_resume_bit_exact_and_predict_uses_the_average(tmp_path):
    common = FAST + DEMO + ["--ema", "0.9", "--scheduler", "none"]  # stopping at 1 of 2 epochs changes no LR
    straight = tmp_path / "straight"
    _cli(common + ["--epochs", "2", "--out", straight])
    cut = tmp_path / "cut"
    _cli(common + ["--epochs", "1", "--out", cut])
    _cli(["--resume", cut, "--epochs", "2", "--quiet"])
    a, b = _state(straight / "last.pt"), _state(cut / "last.pt")
    assert a["ema"]["decay"] == 0.9 and int(a["ema"]["n_averaged"]) == 12
    for key in ("model", "train_model"):
        assert _equal_dicts(a[key], b[key]), key
    assert torch.equal(a["ema"]["n_averaged"], b["ema"]["n_averaged"])
    assert not torch.equal(a["model"]["fc.weight"], a["train_model"]["fc.weight"])
    best = _state(straight / "best.pt")
    lm = load_model(straight / "best.pt")  # no option: the averaged weights
    assert _equal_dicts({k: v for k, v in lm.model.state_dict().items()}, best["model"])
    row = [json.loads(line) for line in (straight / "log.jsonl").read_text().splitlines()][best["best"]["epoch"] - 1]
    from augkit.data.synthetic import SyntheticFaces
    assert row["nme"] > 0 and lm.predict([SyntheticFaces(1, seed=9).image(0)]).shape == (1, 68, 2)


# ---------------------------------------------------------------------------- frozen warm-up

def test_frozen_parameters_do_not_change_during_the_frozen_epochs(tmp_path, monkeypatch):
    import io

    from augkit.run_folder import RunFolder
    from augkit.train import builders
    made, saved = [], []
    real_make, real_save = builders.make_model, RunFolder.save_state

    def make(*a, **k):
        m = real_make(*a, **k)
        made.append({n: v.clone() for n, v in m.state_dict().items()})
        return m

    def save(self, ck, improved):   # ck: the checkpoint file's bytes
        state = torch.load(io.BytesIO(ck), map_location="cpu", weights_only=True)
        saved.append({n: v.clone() for n, v in state["model"].items()})
        return real_save(self, ck, improved)
    monkeypatch.setattr(builders, "make_model", make)
    monkeypatch.setattr(RunFolder, "save_state", save)
    out = tmp_path / "frozen"
    _cli(FAST + DEMO + ["--epochs", "3", "--freeze-epochs", "2", "--out", out])
    assert len(made) == 1 and len(saved) == 3
    start = made[0]
    head = {"fc.weight", "fc.bias"}
    body = [k for k in start if k not in head]
    assert any("running_mean" in k for k in body)
    for epoch in (0, 1):   # backbone weights and BatchNorm statistics untouched, the head trained
        assert all(torch.equal(saved[epoch][k], start[k]) for k in body)
        assert not torch.equal(saved[epoch]["fc.weight"], start["fc.weight"])
    changed = [k for k in body if k.endswith("weight") and not torch.equal(saved[2][k], start[k])]
    assert len(changed) > len(body) // 4   # then everything trains
    lrs = [json.loads(line)["lr"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert lrs[0] == pytest.approx(2e-3) and lrs[1] == pytest.approx(2e-3) and lrs[2] < 1e-3  # peak, then cosine


def test_freeze_schedule_restarts_the_warm_up_when_the_backbone_joins():
    from augkit.train.schedule import LRSchedule
    s = LRSchedule("cosine", 1.0, steps_per_epoch=10, epochs=4, warmup_epochs=1, frozen_epochs=2)
    plain = LRSchedule("cosine", 1.0, steps_per_epoch=10, epochs=2, warmup_epochs=1)
    assert [s.lr(i) for i in range(10)] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert [s.lr(i) for i in range(10, 20)] == pytest.approx([1.0] * 10)
    assert [s.lr(20 + i) for i in range(20)] == pytest.approx([plain.lr(i) for i in range(20)])


@pytest.mark.parametrize("args,needle", [
    (["--ema", "1.5"], "--ema"),
    (["--freeze-epochs", "2", "--epochs", "2"], "--freeze-epochs"),
    (["--lr", "fast"], "--lr"),
    (["--lr", "-1"], "--lr"),
    (["--backbone", "timm/no_such_net_x"], "timm has no model"),
])
def test_bad_recipe_options_are_one_line_errors(tmp_path, args, needle):
    base = [a for a in FAST if a != "tiny" and a != "--backbone"] if "--backbone" in args else FAST
    r = _cli(base + DEMO + ["--out", tmp_path / "bad"] + args, ok=False)
    assert r.exit_code == 2 or r.exit_code == 1
    err = [ln for ln in r.output.splitlines() if ln.startswith("Error")]
    assert len(err) == 1 and needle in err[0], r.output
    assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------------------------- timm

def test_timm_model_trains_saves_and_predicts(tmp_path):
    pytest.importorskip("timm")
    from augkit.cli import main
    from helpers import write_blob_dataset
    data = tmp_path / "blobs"
    write_blob_dataset(data, n=16)
    out = tmp_path / "timm"
    _cli(["--data", data, "--backbone", "timm/resnet18", "--size", "32", "--batch-size", "8", "--workers", "0",
          "--quiet", "--threads", "1", "--no-aug", "--epochs", "1", "--val-fraction", "0.25", "--out", out,
          "--verify", "header"])
    ck = _state(out / "best.pt")
    assert ck["model_info"]["backbone"] == "timm/resnet18" and ck["model_info"]["n_points"] == 4
    lm = load_model(out / "best.pt")
    assert type(lm.model).__module__.startswith("timm.") and lm.model.fc.out_features == 8
    sub = tmp_path / "sub.csv"
    r = CliRunner().invoke(main, ["predict", "--checkpoint", str(out / "best.pt"), "--data", str(data),
                                  "--out", str(sub), "--workers", "0"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    lines = sub.read_text().splitlines()
    assert lines[0].startswith("file_name,") and len(lines) == 17


def test_timm_pretrained_offline_is_a_one_line_error(tmp_path):
    pytest.importorskip("timm")
    code = ("from augkit.cli.train import train\n"
            f"train(['--backbone', 'timm/resnet18', '--pretrained', '--out', {str(tmp_path / 'x')!r}, "
            "'--demo-train', '8', '--demo-val', '0', '--size', '32', '--quiet'])\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "--pretrained" in err[0] and "offline" in err[0], r.stderr
    assert not (tmp_path / "x").exists()


def test_timm_missing_names_the_extra(tmp_path):
    code = ("import sys; sys.modules['timm'] = None\n"
            "from augkit.cli.train import train\n"
            f"train(['--backbone', 'timm/resnet18', '--out', {str(tmp_path / 'x')!r}])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    err = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(err) == 1 and "[timm]" in err[0], r.stderr

