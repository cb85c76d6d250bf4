"""The public benchmarks' conventions (augkit.metrics.benchmark and ``augkit evaluate``'s
``benchmark`` block): NME by inter-ocular distance, inter-pupil distance and box size, the failure
rate and AUC at 0.10, per-attribute subsets; against hand-computed values, in chunks, and end to end
on a WFLW annotation file."""

from __future__ import annotations

import json
import math
import os

import cv2
import numpy as np
import pytest
from helpers import FixedModel

import augkit as ak
from augkit import metrics
from augkit.errors import InputError
from augkit.presets import preprocess_steps
from augkit.schemes import Scheme
from augkit.tta.evaluate import EvalAccumulator, benchmark_table, evaluate_settings

# Four points: the "outer eye corners" 0, 1 and the "pupils" 2, 3, all on y = 0.
EYES = Scheme("eyes4", 4, ((0, 1), (2, 3)), norm=(0, 1), pupils=(2, 3))
BOXED = Scheme("boxed4", 4, ((0, 1), (2, 3)), norm=(0, 1), pupils=(2, 3), box_norm=True)
TRUE = np.array([[[0, 0], [10, 0], [2, 0], [7, 0]],        # inter-ocular 10, inter-pupil 5
                 [[0, 0], [20, 0], [5, 0], [15, 0]]], float)  # 20, 10
PRED = TRUE.copy()
PRED[0, 0] += (3, 4)          # image 0: one point 5 px off: mean error 5 / 4 = 1.25
PRED[1, :, 1] += 1            # image 1: every point 1 px off: mean error 1
BOXES = np.array([[0, 0, 16, 4], [0, 0, 9, 16]], float)    # sqrt(w h): 8 and 12
ATTRS = {"pose": np.array([1, 0], np.uint8), "blur": np.array([0, 0], np.uint8),
         "occlusion": np.array([1, 1], np.uint8)}


def test_nme_by_each_normaliser_by_hand():
    np.testing.assert_allclose(metrics.per_image_nme(PRED, TRUE, EYES), [0.125, 0.05])
    np.testing.assert_allclose(metrics.per_image_nme(PRED, TRUE, EYES, "pupils"), [0.25, 0.1])
    np.testing.assert_allclose(metrics.per_image_nme(PRED, TRUE, EYES, "box", BOXES), [1.25 / 8, 1 / 12])
    np.testing.assert_allclose(metrics.per_image_nme(PRED, TRUE, EYES, "box", sizes=[5, 4]), [0.25, 0.25])
    diag = [math.hypot(10, 0), math.hypot(20, 0)]
    np.testing.assert_allclose(metrics.per_image_nme(PRED, TRUE, EYES, "diagonal"), [1.25 / diag[0], 1 / diag[1]])
    np.testing.assert_allclose(metrics.box_size(BOXES), [8, 12])


def test_auc_and_failure_rate_by_hand():
    assert metrics.auc([0.0, 0.05, 0.2], 0.10) == pytest.approx((1 + 0.5 + 0) / 3)
    assert metrics.auc([0.0], 0.10) == 1.0 and metrics.auc([0.1], 0.10) == 0.0
    assert metrics.auc([0.02, np.nan], 0.10) == pytest.approx(0.4)     # NaN: a failure
    assert math.isnan(metrics.auc([], 0.10))
    x, y = metrics.ced([0.0, 0.05, 0.2], 0.10, steps=4)
    np.testing.assert_allclose(x, [0, 0.025, 0.05, 0.075, 0.1])
    np.testing.assert_allclose(y, [1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3])
    assert metrics.failure_rate(PRED, TRUE, EYES, 0.10) == 0.5
    with pytest.raises(InputError, match="threshold must be positive"):
        metrics.auc([0.1], 0)


def test_auc_agrees_with_the_usual_grid_integration():
    """The scripts WFLW results come from integrate the CED on a 0.0001 grid (Simpson's rule); the
    exact area differs by about the grid step."""
    scipy_integrate = pytest.importorskip("scipy.integrate")
    e = np.random.default_rng(0).gamma(4, 0.012, 2000)
    xs = np.arange(0, 0.1 + 0.0001, 0.0001)
    ys = np.array([np.count_nonzero(e <= x) for x in xs]) / len(e)
    grid = scipy_integrate.simpson(ys, x=xs) / 0.1
    assert metrics.auc(e, 0.1) == pytest.approx(grid, abs=2e-3)


def test_benchmark_block_by_hand():
    b = metrics.benchmark(PRED, TRUE, EYES, boxes=BOXES, attributes=ATTRS)
    assert b["primary"] == "nme_norm" and b["n"] == 2 and b["threshold"] == 0.10
    assert b["nme_norm"] == pytest.approx((0.125 + 0.05) / 2)
    assert b["nme_pupils"] == pytest.approx((0.25 + 0.1) / 2)
    assert b["nme_box"] == pytest.approx((1.25 / 8 + 1 / 12) / 2)
    assert b["fr"] == 0.5                                   # 0.125 > 0.10; 0.05 passes
    assert b["auc"] == pytest.approx((0 + 0.5) / 2)         # clip(1 - e / 0.1): 0 and 0.5
    assert b["subsets"]["pose"] == {"nme": pytest.approx(0.125), "fr": 1.0, "auc": 0.0, "n": 1}
    assert b["subsets"]["occlusion"] == {"nme": pytest.approx(0.0875), "fr": 0.5, "auc": pytest.approx(0.25), "n": 2}
    assert b["subsets"]["blur"]["n"] == 0 and math.isnan(b["subsets"]["blur"]["nme"])
    # a box_norm scheme (AFLW) with boxes: the box NME is the benchmark's own
    b = metrics.benchmark(PRED, TRUE, BOXED, boxes=BOXES)
    assert b["primary"] == "nme_box"
    assert b["fr"] == 0.5                                   # 0.15625 fails, 0.0833 passes
    assert b["auc"] == pytest.approx((0 + (1 - (1 / 12) / 0.1)) / 2)
    # without boxes there is no box NME and the primary falls back to the norm pair
    b = metrics.benchmark(PRED, TRUE, BOXED)
    assert "nme_box" not in b and b["primary"] == "nme_norm"


def test_normaliser_errors_are_input_errors():
    with pytest.raises(InputError, match="names no pupils"):
        metrics.normaliser(TRUE, Scheme("plain", 4, norm=(0, 1)), "pupils")
    with pytest.raises(InputError, match="needs the face boxes"):
        metrics.normaliser(TRUE, EYES, "box")
    with pytest.raises(InputError, match="unknown NME normaliser 'ears'"):
        metrics.normaliser(TRUE, EYES, "ears")
    with pytest.raises(InputError, match="attribute 'pose' has 3 flags for 2 images"):
        metrics.benchmark(PRED, TRUE, EYES, attributes={"pose": [1, 0, 1]})


@pytest.mark.parametrize("scheme", [EYES, BOXED], ids=lambda s: s.name)
def test_accumulator_in_chunks_equals_the_benchmark_function(scheme):
    rng = np.random.default_rng(3)
    n = 37
    truth = np.stack([TRUE[i % 2] * rng.uniform(0.5, 2) + rng.uniform(0, 50, 2) for i in range(n)])
    pred = truth + rng.normal(0, 0.8, truth.shape)
    boxes = np.concatenate([truth.min(axis=1) - 3, truth.max(axis=1) + 3], axis=1)
    boxes[:, 3] += 10
    attrs = {"pose": rng.integers(0, 2, n).astype(np.uint8), "blur": rng.integers(0, 2, n).astype(np.uint8)}
    pred[5] = np.nan                                        # an unreadable image: left out
    ok = np.arange(n) != 5
    want = metrics.benchmark(pred[ok], truth[ok], scheme, boxes=boxes[ok],
                             attributes={k: v[ok] for k, v in attrs.items()})
    acc = EvalAccumulator(4, scheme)
    for lo, hi in [(0, 4), (4, 5), (5, 20), (20, n)]:
        acc.add(pred[lo:hi], np.zeros((hi - lo, 4)), truth[lo:hi], np.arange(lo, hi), boxes=boxes[lo:hi],
                attributes={k: v[lo:hi] for k, v in attrs.items()})
    got = acc.result()["benchmark"]
    assert got["primary"] == want["primary"] and got["n"] == want["n"] == n - 1
    for key in ("nme_norm", "nme_pupils", "nme_box", "fr", "auc"):
        assert got[key] == pytest.approx(want[key], rel=1e-12), key
    for name in attrs:
        for key in ("nme", "fr", "auc", "n"):
            assert got["subsets"][name][key] == pytest.approx(want["subsets"][name][key], rel=1e-12)
    with pytest.raises(InputError, match=r"boxes must be \(2, 4\) for 2 images"):
        acc.add(pred[:2], np.zeros((2, 4)), truth[:2], np.arange(2), boxes=boxes[:3])


def test_no_benchmark_block_for_a_plain_scheme_without_extras():
    acc = EvalAccumulator(4, Scheme("plain", 4, norm=(0, 1)))
    acc.add(PRED, np.zeros((2, 4)), TRUE, np.arange(2))
    assert "benchmark" not in acc.result()


# ------------------------------------------------------------------- augkit evaluate on WFLW

def _wflw_set(tmp_path, n=6):
    """A WFLW annotation file (98 points, box, 6 flags, path) and its images."""
    rng = np.random.default_rng(7)
    images = tmp_path / "WFLW_images" / "0--Parade"
    images.mkdir(parents=True)
    lines, truth = [], []
    for i in range(n):
        cv2.imwrite(str(images / f"img{i}.jpg"), rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
        pts = np.round(rng.uniform(10, 50, (98, 2)), 2)
        pts[60], pts[72] = (15 + i, 30), (55 - i, 31)       # the eye corners apart
        truth.append(pts)
        flags = [(i + j) % 2 for j in range(6)]
        lines.append(" ".join([*(f"{v:.2f}" for v in pts.reshape(-1)), "5", "6", str(60 + i), "58",
                               *map(str, flags), f"0--Parade/img{i}.jpg"]))
    label = tmp_path / "list_98pt_rect_attr_test.txt"
    label.write_text("\n".join(lines) + "\n")
    return label, np.stack(truth)


def test_evaluate_on_a_wflw_file_reports_the_benchmark_conventions(tmp_path):
    from augkit.tta import evaluate_tta
    from augkit.tta.evaluate import report_lines
    from augkit.tta.inputs import read_labelled_extras
    from augkit.tta.runners import Compute
    label, truth = _wflw_set(tmp_path)
    model = FixedModel(np.full((98, 2), 16.0), preprocess=ak.Compose(preprocess_steps(32, "letterbox")))
    report = evaluate_tta([model], label, tta=(), n_worst=0, json_out=tmp_path / "m.json",
                          compute=Compute(scheme="wflw98"))
    bench = report.results[0]["benchmark"]
    assert bench["primary"] == "nme_norm" and bench["n"] == 6 and "nme_pupils" in bench and "nme_box" in bench
    assert set(bench["subsets"]) == {"pose", "expression", "illumination", "make-up", "occlusion", "blur"}
    assert bench["subsets"]["pose"]["n"] == 3
    # the same numbers as the in-memory path and as metrics.benchmark on its predictions
    files, pts, extras = read_labelled_extras(label)
    (res,), _ = evaluate_settings([model], [("none", "none")], files, pts, scheme="wflw98", extras=extras)
    direct = metrics.benchmark(res.points, pts, ak.get_scheme("wflw98"), boxes=extras["boxes"],
                               attributes=extras["attributes"])
    for key in ("nme_norm", "nme_pupils", "nme_box", "fr", "auc"):
        assert bench[key] == pytest.approx(res.metrics["benchmark"][key], rel=1e-9) == direct[key]
    assert bench["subsets"]["blur"]["auc"] == pytest.approx(direct["subsets"]["blur"]["auc"], rel=1e-9)
    np.testing.assert_allclose(extras["boxes"][2], [5, 6, 62, 58])
    lines = report_lines(report)
    start = lines.index(next(ln for ln in lines if ln.startswith("benchmark conventions")))
    assert lines[start + 1].split() == ["setting", "NME_io*", "NME_ip", "NME_box", "FR@0.1", "AUC@0.1"]
    assert any(ln.startswith("per attribute subset") for ln in lines)
    assert any(ln.startswith("make-up (3)") for ln in lines)
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["results"][0]["benchmark"]["subsets"]["pose"]["n"] == 3
    assert os.path.basename(report.data) == "list_98pt_rect_attr_test.txt"


def test_benchmark_table_is_empty_without_benchmark_blocks():
    assert benchmark_table(["none"], [{"mse": 1.0}]) == []
