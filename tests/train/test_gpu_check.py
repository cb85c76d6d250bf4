"""benchmarks/gpu_check.py: one line and exit 0 without CUDA; its measurement logic on the CPU
(--smoke-cpu, a tiny model; the numbers mean nothing)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def test_without_cuda_one_line_and_exit_0():
    r = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0] and "not measured" in lines[0]


@pytest.mark.slow
def test_smoke_on_cpu_fills_every_row_of_the_table():
    r = subprocess.run([sys.executable, str(SCRIPT), "--smoke-cpu"], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    table = r.stdout.split("measurement")[-1]
    for row in ("train tiny 32px", "train tiny 48px", "ratio", "data wait share", "TTA flip (2 views) stacked",
                "TTA full", "augkit train demo", "CUDA vs CPU prediction", "+ EMA 0.999", "train timm/resnet18 32px",
                "head rle K=971", "head integral K=971", "head simcc K=971", "ratio head / regression"):
        assert row in table, row
    assert "ERROR" not in table and " skipped " not in table, table
