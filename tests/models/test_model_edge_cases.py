"""Behaviours a review of augkit.train / augkit.tta found wanting, kept fixed."""

import numpy as np
import pytest
import torch

from augkit.models.checkpoint import read_checkpoint
from augkit.models.network import build_model
from augkit.data import read_dataset
from augkit.data.synthetic import template
from augkit.tta.outputs import submission_text


def test_regression_head_stays_float32_under_bf16_autocast():
    net = build_model("tiny", 68, mean_shape=np.full((68, 2), 0.5)).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(x)
    assert y.dtype == torch.float32
    lin = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
    feats = torch.rand(4, lin.in_features)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        a = lin(feats)
    with torch.no_grad():
        b = torch.nn.functional.linear(feats, lin.weight, lin.bias)
    assert torch.equal(a, b)  # no bf16 rounding of the coordinates


def test_demo_faces_follow_the_ibug68_eye_order():
    t = template()
    assert t[36, 0] < t[39, 0] < 0 < t[42, 0] < t[45, 0]  # 36 and 45 are the OUTER corners


def test_headerless_csv_with_a_bad_first_row_skips_it(tmp_path):
    import cv2
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((10, 10, 3), np.uint8))
    (tmp_path / "points.csv").write_text("a.png,x,2,3,4\nb.png,1,2,3,4\nc.png,5,6,7,8\n")
    table = read_dataset(tmp_path / "points.csv", format="csv")
    assert len(table) == 2 and len(table.skipped) == 1
    assert table.skipped[0]["row"] == 1 and "a.png" in table.skipped[0]["reason"]


def test_submission_refuses_an_index_the_model_does_not_predict():
    with pytest.raises(ValueError, match=r"index 7, the model predicts points 0..4"):
        submission_text([("a.jpg", [1, 7])], {"a.jpg": np.zeros((5, 2))})


class Thing:
    pass


def test_checkpoint_that_needs_pickled_code_is_refused(tmp_path):
    torch.save({"format": "augkit-train-checkpoint", "x": Thing()}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a readable augkit checkpoint"):
        read_checkpoint(tmp_path / "bad.pt")
