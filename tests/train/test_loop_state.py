"""The rebuilt loop: the time budget of a resumed run counts this invocation only; under DDP one
rank's non-finite loss stops every rank with the error; validation counts each image once;
split.json; function sizes in train/."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from click.testing import CliRunner

from augkit.models.checkpoint import read_checkpoint, save_checkpoint
from augkit.cli.train import train as train_cmd

FAST = ["--backbone", "tiny", "--size", "32", "--batch-size", "8", "--workers", "0", "--quiet", "--threads", "1"]
ROOT = Path(__file__).resolve().parents[2]


def _train(*args):
    return CliRunner().invoke(train_cmd, [*FAST, *args], catch_exceptions=False)


def test_time_budget_on_resume_counts_this_invocation_only(tmp_path):
    out = tmp_path / "run"
    r = _train("--demo-train", "32", "--demo-val", "8", "--epochs", "1", "--out", str(out))
    assert r.exit_code == 0, r.output
    ck = read_checkpoint(out / "last.pt")
    ck["history"][-1]["elapsed_s"] = 8 * 60.0  # as if the first invocation had trained for 8 minutes
    save_checkpoint(out / "last.pt", {k: v for k, v in ck.items() if k not in ("format", "version")})
    r = _train("--resume", str(out), "--epochs", "2", "--time-budget", "2")
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] is None, summary["stopped"]
    final = read_checkpoint(out / "last.pt")
    assert final["epoch"] == 2 and final["global_step"] == 2 * 4  # 32 images / 8 per batch, 2 epochs
    assert summary["elapsed_s"] > 8 * 60 > summary["session_s"]  # elapsed is cumulative, the budget is not


def test_split_json_names_train_and_validation_images(tmp_path, ytf68):
    out = tmp_path / "run"
    r = _train("--data", str(ytf68 / "train"), "--limit", "24", "--epochs", "1", "--val-group", "person",
               "--val-fraction", "0.25", "--out", str(out))
    assert r.exit_code == 0, r.output
    split = json.loads((out / "split.json").read_text())
    assert "by group" in split["how"] and split["seed"] == 0
    assert len(split["train"]) + len(split["val"]) == 24 and not set(split["train"]) & set(split["val"])
    assert all((Path(split["root"]) / n).is_file() for n in split["val"])
    s = json.loads((out / "summary.json").read_text())
    assert s["val_images"] == len(split["val"])


NAN_SCRIPT = textwrap.dedent('''
    import os, sys, json
    import torch, torch.multiprocessing as mp

    def worker(rank, port, out):
        os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(port))
        torch.set_num_threads(1)
        from augkit.train.dist import Dist
        from augkit.train.loop import Engine, StopRule, train_one_epoch
        from augkit.models.network import TinyNet
        from augkit.train.schedule import LRSchedule
        from augkit.train.state import TrainState
        dist = Dist(); dist.init("cpu")
        torch.manual_seed(0)
        model = TinyNet(8, width=4)
        net = torch.nn.parallel.DistributedDataParallel(model)
        engine = Engine(net, model, torch.device("cpu"), None, False, 4, 16, "mse")
        plain = engine.batch_loss
        def poisoned(o, batch, trim=0.0):
            loss = plain(o, batch, trim)
            return loss * float("nan") if batch.get("poison") else loss
        engine.batch_loss = poisoned
        g = torch.Generator().manual_seed(rank)
        batches = [{"image": torch.randint(0, 255, (2, 16, 16, 3), dtype=torch.uint8, generator=g),
                    "target": torch.rand(2, 4, 2, generator=g), "mask": torch.ones(2, 4, dtype=torch.bool),
                    "index": torch.arange(2), "poison": rank == 1 and step == 2} for step in range(12)]
        state = TrainState(model, torch.optim.SGD(model.parameters(), lr=0.01), LRSchedule("none", 0.01, 12, 1),
                           torch.amp.GradScaler("cuda", enabled=False))
        result = {"rank": rank}
        try:
            train_one_epoch(state, engine, batches, 0, 12, StopRule(dist, None), lambda: None, {})
            result["error"] = None
        except FloatingPointError as e:
            result["error"] = str(e)
        result["step"] = state.step_in_epoch
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump(result, f)
        # free the DDP model before its process group: the other order aborted the process at its
        # exit about one run in ten (gloo: "terminate called without an active exception")
        del engine, net, state
        import gc; gc.collect()
        dist.close()

    if __name__ == "__main__":
        mp.spawn(worker, args=(int(sys.argv[1]), sys.argv[2]), nprocs=2, join=True)
''')


def test_ddp_nonfinite_loss_on_one_rank_stops_every_rank(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "nan_ddp.py"
    script.write_text(NAN_SCRIPT)
    r = subprocess.run([sys.executable, str(script), str(port), str(tmp_path)], capture_output=True, text=True,
                       timeout=180, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    res = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1)]
    assert "epoch 1, step 2: the loss is nan (process 1 of 2)" in res[1]["error"]
    # rank 0 stops too, with the error (its own loss turns NaN one step later through the averaged gradients)
    assert res[0]["error"] and ("the loss is nan" in res[0]["error"] or "another process" in res[0]["error"])
    assert res[0]["step"] == res[1]["step"] == 8  # both stopped at the first flag exchange after step 3


def test_validation_counts_each_image_once_across_ranks():
    from augkit.train.builders import ShardSampler
    n, world = 13, 4
    seen = [i for rank in range(world) for _, i in ShardSampler(n, world, rank)]
    assert sorted(seen) == list(range(n))


def test_ddp_time_budget_stops_every_rank_at_a_flag_exchange(tmp_path):
    from augkit.train.dist import SYNC_EVERY
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "augkit.cli.train", *FAST, "--nproc", "2", "--demo-train", "400", "--demo-val", "13",
           "--epochs", "1", "--time-budget", "0.0001", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ck = read_checkpoint(out / "last.pt")
    assert ck["world"] == 2 and ck["epoch"] == 0 and ck["step_in_epoch"] == SYNC_EVERY  # 25 steps per epoch
    summary = json.loads((out / "summary.json").read_text())
    assert "time budget" in summary["stopped"] and summary["val_images"] == 13
    import numpy as np
    assert np.isfinite(ck["history"][0]["mse"])  # validation ran over 2 ranks (each image once: test_validation_counts_each_image_once_across_ranks)
