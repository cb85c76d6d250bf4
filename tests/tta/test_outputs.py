"""Prediction files: the competition submission (header, row order, rounding) and all-points files."""

import json

import numpy as np

from augkit.tta import round_half_up, submission_text, write_points, write_submission


def test_rounding_is_to_nearest_never_truncation():
    x = np.array([2.5, 2.49, 10.7, 10.2, -0.6, -0.4, 0.5, 99.999])
    assert round_half_up(x).tolist() == [3, 2, 11, 10, -1, 0, 1, 100]


def test_submission_header_order_and_rounding(tmp_path):
    preds = {
        "b.jpg": np.array([[1.6, 2.4], [3.5, 4.49], [10.7, 20.2]]),
        "a.jpg": np.array([[0.2, 0.7], [5.5, 6.5], [7.9, 8.1]]),
        "c.jpg": np.array([[9.0, 9.0], [9.0, 9.0], [9.0, 9.0]]),
    }
    tp = [("b.jpg", [2, 0]), ("c.jpg", [1, 2]), ("a.jpg", [0, 1])]   # file order, not sorted
    path = tmp_path / "sub.csv"
    missing = write_submission(path, tp, preds)
    assert missing == []
    lines = path.read_text().splitlines()
    assert lines[0] == "file_name,Point_M0_X,Point_M0_Y,Point_M1_X,Point_M1_Y"
    assert lines[1:] == ["b.jpg,11,20,2,2", "c.jpg,9,9,9,9", "a.jpg,0,1,6,7"]


def test_submission_leaves_out_and_reports_missing_predictions():
    tp = [("x.jpg", [0]), ("y.jpg", [0]), ("z.jpg", [0])]
    text, missing = submission_text(tp, {"x.jpg": np.array([[1.0, 2.0]]), "z.jpg": np.array([[np.nan, 1.0]])})
    assert missing == ["y.jpg", "z.jpg"]
    assert text.splitlines() == ["file_name,Point_M0_X,Point_M0_Y", "x.jpg,1,2"]


def test_points_csv_and_json_with_uncertainty(tmp_path):
    pts = np.array([[[1.23456, 2.0], [3.0, 4.0]]])
    spr = np.array([[0.5, 0.25]])
    write_points(tmp_path / "p.csv", ["a,b.jpg"], pts, spr)
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "file_name,Point_0_X,Point_0_Y,Point_1_X,Point_1_Y,Point_0_S,Point_1_S"
    assert lines[1] == '"a,b.jpg",1.235,2.000,3.000,4.000,0.500,0.250'
    write_points(tmp_path / "p.json", ["a.jpg"], pts, spr)
    d = json.loads((tmp_path / "p.json").read_text())
    assert d["images"][0] == {"file_name": "a.jpg", "points": [[1.235, 2.0], [3.0, 4.0]], "uncertainty": [0.5, 0.25]}
    write_points(tmp_path / "q.csv", ["a.jpg"], pts)
    assert "_S" not in (tmp_path / "q.csv").read_text()
