import os
from pathlib import Path

import numpy as np
import pytest

from helpers import YTF68  # AUGKIT_YTF68 points the tests (and the benchmarks) at another copy of the set


@pytest.fixture(scope="session")
def ytf68() -> Path:
    """The real 68-point set beside the repository (skips when absent)."""
    if not (YTF68 / "train" / "landmarks.csv").is_file():
        pytest.skip(f"ytf68 not found at {YTF68} (set AUGKIT_YTF68 to its folder)")
    return YTF68


def pytest_configure(config):
    os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def face():
    """A 180x200 RGB image with texture and 68 points inside it."""
    rng = np.random.default_rng(123)
    img = (rng.random((180, 200, 3)) * 255).astype(np.uint8)
    pts = np.column_stack([rng.uniform(40, 160, 68), rng.uniform(30, 150, 68)])
    img.setflags(write=False)
    pts.setflags(write=False)
    return img, pts
