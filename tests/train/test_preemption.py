"""Stopped by the scheduler: SIGTERM / SIGUSR1 during `augkit train` (last.pt at the signal's step,
exit 143 / 138, --resume bit-identical to a run never stopped) and during the other commands (no
temporary file left, every earlier output byte-identical)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from augkit.models.checkpoint import read_checkpoint  # noqa: E402

FAST = ["--backbone", "tiny", "--size", "32", "--batch-size", "8", "--workers", "0", "--quiet", "--threads", "1"]
ENV = dict(os.environ, OMP_NUM_THREADS="1")
BOUND_S = 30  # the documented bound between the signal and the exit, on a CPU


def _train(*args):
    return [sys.executable, "-m", "augkit", "train", *FAST, *args]


def _temporaries(*folders):
    return sorted(str(p) for f in folders for p in Path(f).rglob("*.tmp"))


def _stop_mid_epoch(out: Path, args, signals=(signal.SIGTERM,), group=False):
    """Start a training, wait for its first mid-epoch checkpoint, send ``signals`` (``group``: to
    every process of its process group, as Slurm's scancel does); return (exit code, seconds from
    the signal to the exit, stderr, the checkpoint seen before the signal)."""
    p = subprocess.Popen(_train(*args, "--out", str(out)), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=group)
    deadline = time.time() + 120
    seen = None
    while time.time() < deadline and p.poll() is None:
        if (out / "last.pt").is_file():
            try:
                seen = read_checkpoint(out / "last.pt")
                break
            except ValueError:  # pragma: no cover - never half-written (atomic); read again
                pass
        time.sleep(0.02)
    assert p.poll() is None and seen is not None, p.communicate()[1].decode()[-2000:]
    for s in signals:
        if group:
            os.killpg(p.pid, s)
        else:
            p.send_signal(s)
    t = time.time()
    _, err = p.communicate(timeout=BOUND_S + 30)
    return p.returncode, time.time() - t, err.decode(), seen


def _stopped_by_sigterm(code: str, reached: str) -> None:
    """``code`` run under ``stop_cleanly('t')``, which sends itself SIGTERM: it must have printed
    ``reached`` before the stop, then exited 143 with the stop line."""
    r = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 143 and reached in r.stdout and "t: stopped by SIGTERM" in r.stderr, r.stderr[-2000:]


def test_a_signal_during_an_import_is_delivered_once_the_import_is_done():
    """An exception raised inside torch's import can abort the process (exit -6): the signal waits."""
    code = ("import os, signal, threading\n"
            "from augkit.signals import stop_cleanly\n"
            "with stop_cleanly('t', process_exit=True):\n"
            "    threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM)).start()\n"
            "    import torch\n"
            "    print('imported', flush=True)\n"
            "    import time; time.sleep(30)\n")
    _stopped_by_sigterm(code, "imported")


def test_a_signal_inside_a_deferred_block_lands_after_it():
    """augkit.files' atomic writers create their temporary file in such a block: a signal sent to
    the process (any thread may take it) must not land between the file and its name."""
    code = ("import os, signal, threading, time\n"
            "from augkit.signals import deferred, stop_cleanly\n"
            "with stop_cleanly('t', process_exit=True):\n"
            "    threading.Thread(target=time.sleep, args=(5,), daemon=True).start()   # another thread\n"
            "    with deferred():\n"
            "        os.kill(os.getpid(), signal.SIGTERM)\n"
            "        t0 = time.time()\n"
            "        while time.time() - t0 < 0.5:   # bytecodes run: an undeferred handler would fire here\n"
            "            pass\n"
            "        print('block done', flush=True)\n"
            "    time.sleep(30)\n")
    _stopped_by_sigterm(code, "block done")



def test_a_signal_never_leaves_a_queue_lock_acquired():
    """A stop that landed inside ``multiprocessing.Queue.put`` right after its lock was acquired
    left the lock held; the DataLoader's shutdown then put to that queue at exit and waited forever
    (CI: the stop line printed, no exit). The signal now waits until the main thread is out of the
    locking code: 30 stops in a loop that is inside ``put`` most of the time, no lock left held."""
    code = ("import multiprocessing as mp, os, signal, threading, time\n"
            "from augkit.signals import stop_cleanly\n"
            "held = took = 0\n"
            "for i in range(30):\n"
            "    q = mp.Queue()\n"
            "    q.cancel_join_thread()\n"
            "    t0 = time.time()\n"
            "    try:\n"
            "        with stop_cleanly('t'):\n"
            "            threading.Timer(0.001 + 0.0005 * i, os.kill, (os.getpid(), signal.SIGTERM)).start()\n"
            "            while True:\n"
            "                q.put(None)\n"
            "                q._buffer.clear()\n"
            "                sum(range(200))   # a little of the caller's own work between the puts\n"
            "    except SystemExit as e:\n"
            "        assert e.code == 143\n"
            "    took = max(took, time.time() - t0)\n"
            "    if q._notempty.acquire(timeout=2):\n"
            "        q._notempty.release()\n"
            "    else:\n"
            "        held += 1\n"
            "        q._notempty = threading.Condition()   # so that its exit handler does not hang\n"
            "print(held, took, flush=True)\n")
    r = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    held, took = r.stdout.split()
    assert int(held) == 0 and float(took) < 2, r.stdout


def test_a_main_thread_blocked_in_a_queue_still_stops():
    """The wait in locking code is bounded (LOCKING_WAIT_S): a main thread blocked for good in a
    queue's ``get`` is stopped there all the same."""
    code = ("import os, queue, signal, threading\n"
            "from augkit import signals\n"
            "signals.LOCKING_WAIT_S = 0.5\n"
            "with signals.stop_cleanly('t', process_exit=True):\n"
            "    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()\n"
            "    print('waiting', flush=True)\n"
            "    queue.Queue().get()\n")
    t = time.time()
    _stopped_by_sigterm(code, "waiting")
    assert time.time() - t < 20


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_that_step_and_resume_is_bit_identical(tmp_path):
    args = ["--demo-train", "400", "--demo-val", "16", "--epochs", "2", "--checkpoint-steps", "3", "--seed", "3"]
    full = tmp_path / "full"
    r = subprocess.run(_train(*args, "--out", str(full)), env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]

    out = tmp_path / "stopped"
    code, took, err, seen = _stop_mid_epoch(out, args)
    assert code == 143, err[-2000:]
    assert took < BOUND_S
    ck = read_checkpoint(out / "last.pt")
    assert ck["epoch"] == 0 and 0 < ck["step_in_epoch"] < 50 and ck["step_in_epoch"] >= seen["step_in_epoch"]
    assert ck["global_step"] == ck["step_in_epoch"]
    assert f"stopped by SIGTERM: {out / 'last.pt'} holds epoch 1, step {ck['step_in_epoch']}" in err
    assert f"augkit train --resume {out}" in err
    assert not (out / "summary.json").exists() and not _temporaries(out)
    assert not (out / ".lock").exists() and not list(out.glob("*.lock"))

    r = subprocess.run(_train("--resume", str(out)), env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = read_checkpoint(full / "last.pt"), read_checkpoint(out / "last.pt")
    assert a["global_step"] == b["global_step"] == 100
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in ("train_loss", "val_loss", "nme"):
        assert [h[k] for h in a["history"]] == [h[k] for h in b["history"]], k


@pytest.mark.slow
def test_sigusr1_then_a_second_signal_during_the_save_then_the_same_command_again(tmp_path):
    """Slurm's warning signal stops the run like SIGTERM (exit 138); a SIGTERM right behind it, while
    the checkpoint is written, changes nothing: it completes and loads. The requeued job runs the
    same command line: --auto-resume continues the run."""
    out = tmp_path / "r"
    args = ["--demo-train", "400", "--demo-val", "16", "--epochs", "2", "--checkpoint-steps", "3", "--auto-resume",
            "--lr", "auto", "--lr-find-steps", "20"]
    code, took, err, _ = _stop_mid_epoch(out, args, signals=(signal.SIGUSR1, signal.SIGTERM, signal.SIGTERM))
    assert code == 138 and "stopped by SIGUSR1" in err, err[-2000:]
    assert took < BOUND_S
    ck = read_checkpoint(out / "last.pt")
    assert ck["step_in_epoch"] > 0 and not _temporaries(out)
    r = subprocess.run(_train(*args, "--out", str(out)), env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"--auto-resume: continuing the run in {out}" in r.stderr
    assert read_checkpoint(out / "last.pt")["global_step"] == 100


@pytest.mark.slow
def test_sigterm_during_validation_saves_the_trained_epoch_and_resume_validates_it(tmp_path):
    """Two steps an epoch and a long validation: the signal comes during the validation, which
    stops; last.pt holds the epoch's steps, not yet validated; --resume validates it and goes on,
    ending bit-identical to a run never stopped."""
    args = ["--demo-train", "16", "--demo-val", "1500", "--epochs", "2", "--checkpoint-steps", "1", "--seed", "5"]
    full = tmp_path / "full"
    r = subprocess.run(_train(*args, "--out", str(full)), env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "stopped"
    p = subprocess.Popen(_train(*args, "--out", str(out)), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "last.pt").is_file():  # step 1 of 2: validation comes next
        time.sleep(0.01)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    t = time.time()
    _, err = p.communicate(timeout=BOUND_S + 30)
    assert p.returncode == 143, err.decode()[-2000:]
    assert time.time() - t < BOUND_S
    ck = read_checkpoint(out / "last.pt")
    assert (ck["epoch"], ck["step_in_epoch"], ck["history"]) == (0, 2, [])
    assert "epoch 1, all 2 steps, not yet validated" in err.decode()
    r = subprocess.run(_train("--resume", str(out)), env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = read_checkpoint(full / "last.pt"), read_checkpoint(out / "last.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [h["val_loss"] for h in a["history"]] == [h["val_loss"] for h in b["history"]]
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]


def test_auto_resume_starts_over_a_run_that_never_saved(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "config.json").write_text("{}")  # a run stopped before its first checkpoint
    args = ["--demo-train", "16", "--demo-val", "8", "--epochs", "1", "--out", str(out)]
    r = subprocess.run(_train(*args), env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "already holds a run" in r.stderr
    r = subprocess.run(_train(*args, "--auto-resume"), env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert read_checkpoint(out / "last.pt")["epoch"] == 1


def test_sigterm_to_the_whole_process_group_with_loader_workers(tmp_path):
    """scancel signals every process of the job, the DataLoader workers too: they ignore it, the
    training saves and exits 143; a run with workers that is not stopped exits by itself."""
    out = tmp_path / "w"
    args = ["--demo-train", "400", "--demo-val", "16", "--epochs", "2", "--checkpoint-steps", "3", "--workers", "1"]
    code, took, err, _ = _stop_mid_epoch(out, args, group=True)
    assert code == 143, err[-2000:]
    assert took < BOUND_S and read_checkpoint(out / "last.pt")["step_in_epoch"] > 0
    done = tmp_path / "done"
    r = subprocess.run(_train("--demo-train", "32", "--demo-val", "16", "--epochs", "1", "--workers", "1", "--out",
                              str(done)), env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.slow
def test_sigterm_under_nproc_every_rank_stops_at_one_step(tmp_path):
    out = tmp_path / "ddp"
    args = ["--nproc", "2", "--demo-train", "400", "--demo-val", "16", "--epochs", "2", "--checkpoint-steps", "8"]
    code, took, err, _ = _stop_mid_epoch(out, args)
    assert code == 143, err[-3000:]
    ck = read_checkpoint(out / "last.pt")
    assert ck["world"] == 2 and ck["epoch"] == 0 and ck["step_in_epoch"] > 0 and not _temporaries(out)
    r = subprocess.run(_train("--resume", str(out), "--nproc", "2"), env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert read_checkpoint(out / "last.pt")["global_step"] == 50  # 400 images / 2 ranks / 8 a batch, 2 epochs


# ---------------------------------------------------------------- the other commands

@pytest.fixture(scope="module")
def trained(ytf68, tmp_path_factory):
    root = tmp_path_factory.mktemp("preempt")
    run = root / "run"
    r = subprocess.run(_train("--data", str(ytf68 / "train"), "--limit", "48", "--epochs", "1", "--out", str(run)),
                       env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    data = root / "data"  # 160 labelled images: long enough to be stopped in the middle
    data.mkdir()
    (data / "images").symlink_to(ytf68 / "test" / "images")
    lines = (ytf68 / "test" / "landmarks.csv").read_text(encoding="utf-8").splitlines()
    (data / "landmarks.csv").write_text("\n".join(lines[:161]) + "\n", encoding="utf-8")
    return run, data


def _commands(run, data, out):
    return {
        "predict": (["predict", "--run", str(run), "--data", str(data), "--tta", "flip", "--out", str(out / "sub.csv")],
                    ["sub.csv"]),
        "evaluate": (["evaluate", "--run", str(run), "--data", str(data), "--tta", "flip", "--png",
                      str(out / "worst.png"), "--json", str(out / "metrics.json")], ["worst.png", "metrics.json"]),
        "tta fit": (["tta", "fit", "--run", str(run), "--data", str(data), "--tta", "flip", "--folds", "2", "--out",
                     str(out / "tta.yaml")], ["tta.yaml"]),
        "audit": (["audit", "--data", str(data), "--out", str(out / "audit"), "--folds", "2", *FAST[:4], "--epochs",
                   "1", "--workers", "0", "--quiet", "--write-fixed", str(out / "fixed.csv")], ["fixed.csv"]),
    }


def _whole(data: bytes, like: Path) -> bool:
    """``data`` is a complete file of the kind the uninterrupted run wrote at ``like``."""
    if like.suffix == ".png":
        return data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82")
    if like.suffix == ".json":
        import json
        json.loads(data)
        return True
    return data.count(b"\n") == like.read_bytes().count(b"\n")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["predict", "evaluate", "tta fit", "audit"])
def test_sigterm_leaves_no_temporary_file_and_earlier_outputs_intact(trained, tmp_path, name):
    """The command is stopped at several moments of its run (a fraction of its uninterrupted
    duration); each time: exit 143 (or 0 when it had finished), no temporary file anywhere, and
    each file that was there before either untouched or replaced whole (a command that writes two
    files may be stopped between them)."""
    run, data = trained
    args, outputs = _commands(run, data, tmp_path / "full")[name]
    t = time.time()
    r = subprocess.run([sys.executable, "-m", "augkit", *args], env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    whole = time.time() - t
    stopped = 0
    for i, fraction in enumerate((0.15, 0.35, 0.55, 0.8)):  # of the first run's time (later runs may be faster)
        out = tmp_path / f"try{i}"
        out.mkdir()
        args, outputs = _commands(run, data, out)[name]
        earlier = {f: f"earlier output {f}\n".encode() for f in outputs}
        for f, b in earlier.items():
            (out / f).write_bytes(b)
        p = subprocess.Popen([sys.executable, "-m", "augkit", *args], env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        time.sleep(fraction * whole)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=BOUND_S + 30)
        assert p.returncode in (143, 0), err.decode()[-2000:]
        assert not _temporaries(out, run), _temporaries(out, run)
        if p.returncode == 143:
            stopped += 1
            assert "stopped by SIGTERM" in err.decode()
        for f, b in earlier.items():
            now = (out / f).read_bytes()
            assert now == b or _whole(now, tmp_path / "full" / f), f
            if p.returncode == 0:
                assert now != b, f
    assert stopped >= 2, "the signal came too late to test anything"


def test_run_without_best_pt_says_it_uses_last_pt_and_why(trained, tmp_path):
    import shutil
    run, data = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "best.pt").unlink()
    r = subprocess.run([sys.executable, "-m", "augkit", "predict", "--run", str(copy), "--data", str(data), "--tta",
                        "none", "--out", str(tmp_path / "sub.csv")], env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"--run {copy}: using last.pt: no epoch has been validated yet" in r.stderr
    assert (tmp_path / "sub.csv").is_file()
