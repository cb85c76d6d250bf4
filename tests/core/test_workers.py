"""Forked DataLoader workers after the parent has run OpenCV's thread pool: a child that
reconfigures the inherited pool (``cv2.setNumThreads`` in ``worker_init_fn``, the usual recipe)
hangs on OpenCV 4.x and 5.x alike (measured: 4.14 and 5.1 both hang, so the hang was never a
reason to pin OpenCV below 5). augkit's loaders fork their workers while the parent is set to one
thread (:func:`augkit.workers.worker_context`): they finish on whichever OpenCV is installed.

The script also ends with its loader still referenced, so its workers (which ignore SIGTERM, see
:mod:`augkit.signals`) are ended by :func:`augkit.workers._end_workers` at exit: that path hung
once (torch's SIGCHLD handler interrupted it), and a hang here is a timeout."""

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")

SCRIPT = textwrap.dedent("""
    import cv2, numpy as np, torch
    from augkit.train.data import make_loader
    cv2.setNumThreads(4)
    big = np.random.randint(0, 255, (1500, 1500, 3), np.uint8)
    for _ in range(4):  # the parent's pool is busy and alive when the workers are forked
        cv2.GaussianBlur(big, (0, 0), 3)
        cv2.resize(big, (1000, 1000))

    class Warps(torch.utils.data.Dataset):
        def __len__(self):
            return 48

        def __getitem__(self, i):
            img = np.random.default_rng(i).integers(0, 255, (400, 400, 3), dtype=np.uint8)
            out = cv2.warpAffine(img, np.float64([[1, 0.1, 3], [0.1, 1, 2]]), (400, 400))
            return torch.from_numpy(cv2.GaussianBlur(out, (0, 0), 2)[:4, :4].copy())

    loader = make_loader(Warps(), 8, 2, None)
    n = sum(len(b) for _ in range(2) for b in loader)
    print("ok", n, cv2.__version__, cv2.getNumThreads())
""")


def test_forked_workers_finish_after_the_parent_used_the_opencv_pool():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    ok, n, version, threads = r.stdout.split()
    assert ok == "ok" and int(n) == 96
    assert int(threads) == 4  # the parent's own setting is back after the fork


STOPPED_DURING_START = textwrap.dedent("""
    import multiprocessing.context as mpc, os, signal, time
    import torch
    from augkit.signals import stop_cleanly
    from augkit.train.data import make_loader

    started = mpc.ForkProcess.start

    def start_then_stop(process):  # the stop signal lands right after multiprocessing registered the worker
        started(process)
        print(process.pid, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.3)

    mpc.ForkProcess.start = start_then_stop

    class Numbers(torch.utils.data.Dataset):
        def __len__(self):
            return 64

        def __getitem__(self, i):
            return torch.tensor([i])

    with stop_cleanly("t", process_exit=True):
        for _ in make_loader(Numbers(), 8, 2, None):
            time.sleep(1)
""")


def test_a_stop_signal_during_a_worker_start_still_ends_the_worker_at_exit():
    """A worker ignores SIGTERM (its parent ends it). Stopped between its fork and its registration,
    it was left to multiprocessing's exit handler, which sends SIGTERM and waits without a timeout:
    the parent printed its stop line and never exited (a 60 s timeout in CI). Now the stop waits
    for the start to complete; the process exits 143 and no worker outlives it."""
    import os
    import time
    r = subprocess.run([sys.executable, "-c", STOPPED_DURING_START], capture_output=True, text=True, timeout=60)
    assert r.returncode == 143 and "t: stopped by SIGTERM" in r.stderr, r.stderr[-2000:]
    pids = [int(x) for x in r.stdout.split()]
    assert pids
    time.sleep(0.5)
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for the (ended) test's reaping is fine
            assert f.read().split(")")[-1].split()[0] == "Z", pid
