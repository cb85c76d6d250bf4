"""The public face-landmark formats (augkit.data.public): WFLW's annotation files, the COCO-style
keypoint JSON mmpose distributes COFW / AFLW / WFLW in, and HRNet's CSVs (AFLW-19). Small files
written in each format's documented layout inside tmp_path; no data is shipped."""

from __future__ import annotations

import json
import os
import re

import cv2
import numpy as np
import pytest

import augkit.data as D
from augkit.data import DatasetError
from augkit.data.public import WFLW_ATTRIBUTES, read_coco_json, read_hrnet_csv, read_wflw


def _image(path) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(str(path), np.full((24, 32, 3), 128, np.uint8))


def _face(k: int, seed: int) -> np.ndarray:
    """K distinct (x, y) points with two decimals (exact in the text and in float32 to 1e-4)."""
    rng = np.random.default_rng(seed)
    return np.round(rng.uniform(5, 400, (k, 2)), 2)


# ------------------------------------------------------------------------------------------- WFLW

def _wflw_line(points, box, attrs, path) -> str:
    return " ".join([*(f"{v:.2f}" for v in points.reshape(-1)), *(str(int(b)) for b in box),
                     *(str(a) for a in attrs), path])


@pytest.fixture()
def wflw(tmp_path):
    """The WFLW archives' layout: WFLW_annotations/list_98pt_rect_attr_train_test/*.txt beside
    WFLW_images/<event>/<name>.jpg; two faces in one image, one in another."""
    ann = tmp_path / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    ann.mkdir(parents=True)
    _image(tmp_path / "WFLW_images" / "51--Dancing" / "51_Dancing_1.jpg")
    _image(tmp_path / "WFLW_images" / "7--Cheering" / "7_Cheering_2.jpg")
    faces = [_face(98, i) for i in range(3)]
    boxes = [(10, 20, 110, 140), (200, 30, 260, 100), (0, 0, 50, 60)]
    attrs = [(0, 1, 0, 0, 1, 0), (1, 0, 0, 1, 0, 0), (0, 0, 1, 0, 0, 1)]
    paths = ["51--Dancing/51_Dancing_1.jpg", "51--Dancing/51_Dancing_1.jpg", "7--Cheering/7_Cheering_2.jpg"]
    label = ann / "list_98pt_rect_attr_test.txt"
    label.write_text("\n".join(_wflw_line(*row) for row in zip(faces, boxes, attrs, paths)) + "\n")
    return label, faces, boxes, attrs, paths


def test_wflw_gives_the_points_boxes_attributes_and_image_paths(wflw, tmp_path):
    label, faces, boxes, attrs, paths = wflw
    assert D.detect_format(label) == "wflw"
    table = D.read_dataset(label)
    assert table.format == "wflw" and len(table) == 3 and not table.skipped
    assert table.points.shape == (3, 98, 2) and table.points.dtype == np.float32
    np.testing.assert_allclose(table.points, np.stack(faces), atol=1e-4)
    np.testing.assert_array_equal(table.boxes, np.array(boxes, np.float32))
    assert table.boxes.dtype == np.float32
    assert tuple(table.attributes) == WFLW_ATTRIBUTES
    for j, name in enumerate(WFLW_ATTRIBUTES):
        np.testing.assert_array_equal(table.attributes[name], [a[j] for a in attrs])
        assert table.attributes[name].dtype == np.uint8
    root = str(tmp_path / "WFLW_images")
    assert table.root == root
    assert list(table.files) == [os.path.join(root, p) for p in paths]   # an image with two faces: two rows
    assert list(table.lines) == [1, 2, 3]


def test_wflw_subset_keeps_boxes_and_attributes_aligned(wflw):
    table = D.read_dataset(wflw[0]).subset(np.array([2, 0]))
    np.testing.assert_array_equal(table.boxes[:, 0], [0, 10])
    np.testing.assert_array_equal(table.attributes["blur"], [1, 0])
    np.testing.assert_allclose(table.points[1], wflw[1][0], atol=1e-4)


def test_wflw_folder_with_one_list_is_detected_and_images_can_be_named(wflw, tmp_path):
    label = wflw[0]
    assert D.detect_format(label.parent) == "wflw"
    assert len(D.read_dataset(label.parent)) == 3
    other = tmp_path / "elsewhere"
    _image(other / "51--Dancing" / "51_Dancing_1.jpg")
    table = read_wflw(label, images=str(other))
    assert len(table) == 2 and table.skipped[0]["row"] == 3 and "not found in" in table.skipped[0]["reason"]
    (label.parent / "list_98pt_rect_attr_train.txt").write_text(label.read_text())
    assert D.detect_format(label) == "wflw"
    with pytest.raises(DatasetError, match="cannot tell the dataset format"):
        D.detect_format(label.parent)        # two lists: name the file


@pytest.mark.parametrize(("edit", "reason"), [
    (lambda f: f[:-2] + [f[-1]], r"206 fields, expected 207 \(196 coordinates of 98 points"),
    (lambda f: f[:7] + ["abc"] + f[8:], r"field 8 \(y3\) is 'abc', expected a finite number"),
    (lambda f: f[:7] + ["nan"] + f[8:], r"field 8 \(y3\) is 'nan', expected a finite number"),
    (lambda f: f[:7] + ["1e39"] + f[8:], r"field 8 \(y3\) is '1e39', expected a finite number"),  # inf in float32
    (lambda f: f[:200] + ["2"] + f[201:], r"field 201 \(pose\) is 2, expected an attribute flag 0 or 1"),
    (lambda f: f[:196] + ["120", "20", "110", "140"] + f[200:], r"the box 120 20 110 140 has x_max < x_min"),
    (lambda f: f[:-1] + ["51--Dancing/missing.jpg"], r"image '51--Dancing/missing.jpg' not found in"),
])
def test_wflw_bad_lines_name_file_line_and_field(wflw, edit, reason):
    label = wflw[0]
    lines = label.read_text().splitlines()
    lines[1] = " ".join(edit(lines[1].split()))
    label.write_text("\n".join(lines) + "\n")
    table = D.read_dataset(label)
    assert len(table) == 2 and list(table.lines) == [1, 3]
    (skip,) = table.skipped
    assert skip["file"] == str(label) and skip["row"] == 2
    assert re.search(reason, skip["reason"]), skip["reason"]
    with pytest.raises(DatasetError, match=rf"{label}, line 2: .*{reason}"):
        D.read_dataset(label, strict=True)


def test_wflw_detection_takes_no_file_of_the_other_formats(tmp_path, wflw):
    _image(tmp_path / "a.png")
    csv = tmp_path / "plain.csv"
    csv.write_text("a.png," + ",".join(str(v) for v in range(196)) + "\n")
    tsv = tmp_path / "landmarks.csv"
    tsv.write_text("file_name\tPoint_0_X\tPoint_0_Y\na.png\t1\t2\n")
    spaced = tmp_path / "first.txt"            # the path first: not WFLW's layout
    spaced.write_text("a.png " + " ".join(["1"] * 206) + "\n")
    assert D.detect_format(csv) == "csv"
    assert D.detect_format(tsv) == "competition"
    assert D.detect_format(spaced) == "csv"
    pts = tmp_path / "pts"                     # a 300-W folder stays pts, a .pts file too
    _image(pts / "a.png")
    (pts / "a.pts").write_text("version: 1\nn_points: 1\n{\n3 4\n}\n")
    assert D.detect_format(pts) == "pts" and D.detect_format(pts / "a.pts") == "pts"


@pytest.mark.slow
def test_wflw_50k_lines_read_in_compact_arrays(tmp_path):
    """Competition scale: 50k faces read into one float32 points array, boxes and flags (no
    per-row objects but the file names), in a few seconds."""
    import time
    import tracemalloc
    images = tmp_path / "WFLW_images"
    names = [f"e{i % 7}/img{i:03d}.jpg" for i in range(100)]
    for n in names:
        _image(images / n)
    rng = np.random.default_rng(0)
    pts = np.round(rng.uniform(0, 1000, (50_000, 196)), 3)
    box = rng.integers(0, 500, (50_000, 4))
    box[:, 2:] += box[:, :2]
    with open(tmp_path / "list_98pt_rect_attr_train.txt", "w") as f:
        for i in range(50_000):
            f.write(" ".join(f"{v:.3f}" for v in pts[i]) + " " + " ".join(map(str, box[i])) + " 0 1 0 0 1 0 "
                    + names[i % 100] + "\n")
    tracemalloc.start()
    t0 = time.perf_counter()
    table = read_wflw(tmp_path / "list_98pt_rect_attr_train.txt")
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(table) == 50_000 and not table.skipped
    np.testing.assert_allclose(table.points.reshape(50_000, 196), pts, atol=1e-3)
    np.testing.assert_array_equal(table.boxes, box)
    assert table.points.nbytes == 50_000 * 98 * 2 * 4
    print(f"50k WFLW lines: {seconds:.2f} s, peak traced {peak / 2**20:.0f} MiB "
          f"(points {table.points.nbytes / 2**20:.0f} MiB)")
    assert seconds < 30
    assert peak < 6 * table.points.nbytes + (64 << 20)


# ------------------------------------------------------------------------------- COCO-style JSON

def _coco(tmp_path, k=29, anns=None, box_size=False):
    """mmpose's layout: data/cofw/annotations/cofw_test.json + data/cofw/images/."""
    root = tmp_path / "cofw"
    _image(root / "images" / "000001.jpg")
    _image(root / "images" / "000002.jpg")
    faces = [_face(k, 10 + i) for i in range(3)]
    vis = [np.where(np.arange(k) % 3 == i, 0, 2) for i in range(3)]
    if anns is None:
        anns = []
        for i, (f, v) in enumerate(zip(faces, vis)):
            kp = np.concatenate([f, v[:, None]], axis=1).reshape(-1).tolist()
            a = {"id": 100 + i, "image_id": 1 + (i > 0), "keypoints": kp, "num_keypoints": k,
                 "bbox": [10.0 * i, 5.0, 100.0, 120.0], "category_id": 1}
            if box_size:
                a["box_size"] = 50.0 + i
            anns.append(a)
    doc = {"images": [{"id": 1, "file_name": "000001.jpg", "height": 24, "width": 32},
                      {"id": 2, "file_name": "000002.jpg", "height": 24, "width": 32}],
           "annotations": anns, "categories": [{"id": 1, "name": "face"}]}
    (root / "annotations").mkdir(parents=True)
    label = root / "annotations" / "cofw_test.json"
    label.write_text(json.dumps(doc))
    return label, faces, vis


def test_coco_json_gives_points_visibility_and_boxes(tmp_path):
    label, faces, vis = _coco(tmp_path)
    assert D.detect_format(label) == "coco"
    table = D.read_dataset(label)
    assert table.format == "coco" and len(table) == 3 and table.points.shape == (3, 29, 2)
    np.testing.assert_allclose(table.points, np.stack(faces), atol=1e-4)
    np.testing.assert_array_equal(table.visible, np.stack(vis) > 0)
    np.testing.assert_array_equal(table.boxes, [[0, 5, 100, 125], [10, 5, 110, 125], [20, 5, 120, 125]])
    assert table.box_size is None
    assert [os.path.basename(f) for f in table.files] == ["000001.jpg", "000002.jpg", "000002.jpg"]
    assert table.root == str(tmp_path / "cofw" / "images")


def test_coco_json_keeps_aflw_box_size(tmp_path):
    label, _, _ = _coco(tmp_path, k=19, box_size=True)
    table = read_coco_json(label)
    np.testing.assert_array_equal(table.box_size, [50, 51, 52])


@pytest.mark.parametrize(("change", "reason"), [
    ({"keypoints": [1.0, 2.0, 2]}, "annotation #1 (id 101): keypoints has 3 values, expected 87"),
    ({"image_id": 9}, "annotation #1 (id 101): image_id 9 is not among the file's images"),
    ({"bbox": [0, 0, -5, 10]}, "annotation #1 (id 101): bbox is [0, 0, -5, 10], expected [x, y, width, height]"),
    ({"keypoints": ["a"] * 87}, "annotation #1 (id 101): keypoints holds a value that is not a number"),
])
def test_coco_json_bad_annotations_are_named(tmp_path, change, reason):
    label, _, _ = _coco(tmp_path)
    doc = json.loads(label.read_text())
    doc["annotations"][1].update(change)
    label.write_text(json.dumps(doc))
    table = D.read_dataset(label)
    assert len(table) == 2
    (skip,) = table.skipped
    assert skip["file"] == str(label) and skip["row"] is None and reason in skip["reason"], skip["reason"]
    with pytest.raises(DatasetError, match=re.escape(f"{label}: {reason}")):
        D.read_dataset(label, strict=True)


def test_coco_json_missing_image_and_not_json(tmp_path):
    label, _, _ = _coco(tmp_path)
    os.remove(tmp_path / "cofw" / "images" / "000001.jpg")
    table = D.read_dataset(label)
    assert len(table) == 2 and "image '000001.jpg' not found in" in table.skipped[0]["reason"]
    bad = tmp_path / "broken.json"
    bad.write_text('{"images": [1, 2')
    with pytest.raises(DatasetError, match="broken.json: not a JSON file"):
        D.read_dataset(bad)
    other = tmp_path / "other.json"
    other.write_text('{"images": 3}')
    with pytest.raises(DatasetError, match="expected a COCO-style keypoint JSON"):
        D.read_dataset(other)


# ---------------------------------------------------------------------------------- HRNet CSV

def _hrnet_aflw(tmp_path, rows=None):
    """HRNet's face_landmarks_aflw_test.csv: image_name, scale, box_size, center_w, center_h,
    then 19 x, y pairs; images relative to the CSV's folder."""
    _image(tmp_path / "flickr" / "0" / "image00002.jpg")
    _image(tmp_path / "flickr" / "2" / "image00004.jpg")
    faces = [_face(19, 20 + i) for i in range(2)]
    header = "image_name,scale,box_size,center_w,center_h," + ",".join(
        f"original_{i + 1}_x,original_{i + 1}_y" for i in range(19))
    if rows is None:
        rows = [f"flickr/0/image00002.jpg,1.5,150.5,200.0,180.0,{','.join(f'{v:.2f}' for v in faces[0].reshape(-1))}",
                f"flickr/2/image00004.jpg,0.8,80.0,60.0,70.0,{','.join(f'{v:.2f}' for v in faces[1].reshape(-1))}"]
    label = tmp_path / "face_landmarks_aflw_test.csv"
    label.write_text(header + "\n" + "\n".join(rows) + "\n")
    return label, faces


def test_hrnet_aflw_csv_gives_points_box_size_and_box(tmp_path):
    label, faces = _hrnet_aflw(tmp_path)
    assert D.detect_format(label) == "hrnet"
    table = D.read_dataset(label)
    assert table.format == "hrnet" and len(table) == 2
    np.testing.assert_allclose(table.points, np.stack(faces), atol=1e-4)
    np.testing.assert_array_equal(table.box_size, [150.5, 80.0])
    np.testing.assert_allclose(table.boxes, [[124.75, 104.75, 275.25, 255.25], [20, 30, 100, 110]])
    assert list(table.lines) == [2, 3]
    assert table.files[0] == str(tmp_path / "flickr" / "0" / "image00002.jpg")


def test_hrnet_300w_csv_without_box_size(tmp_path):
    _image(tmp_path / "ibug" / "a.jpg")
    face = _face(68, 1)
    label = tmp_path / "face_landmarks_300w_valid.csv"
    label.write_text("image_name,scale,center_w,center_h," + ",".join(f"x{i},y{i}" for i in range(68)) + "\n"
                     + "ibug/a.jpg,2.0,100,120," + ",".join(f"{v:.2f}" for v in face.reshape(-1)) + "\n")
    table = D.read_dataset(label)
    assert table.format == "hrnet" and table.points.shape == (1, 68, 2) and table.box_size is None
    np.testing.assert_allclose(table.boxes, [[-100, -80, 300, 320]])       # 200 * scale around the centre


def test_hrnet_bad_rows_name_line_and_field(tmp_path):
    label, faces = _hrnet_aflw(tmp_path)
    lines = label.read_text().splitlines()
    cells = lines[2].split(",")
    lines[2] = ",".join(cells[:7] + ["abc"] + cells[8:])
    lines.append("flickr/2/image00004.jpg,1,2")
    label.write_text("\n".join(lines) + "\n")
    table = D.read_dataset(label)
    assert len(table) == 1
    assert [s["row"] for s in table.skipped] == [3, 4]
    assert table.skipped[0]["reason"] == ("image 'flickr/2/image00004.jpg': field 8 (x1) is 'abc', expected a "
                                          "finite number")
    assert "3 fields, expected 43 (image_name, scale, box_size, center_w, center_h, 19 x, y pairs)" in \
        table.skipped[1]["reason"]
    with pytest.raises(DatasetError, match=rf"{label}, line 3: image 'flickr/2/image00004.jpg': field 8 \(x1\)"):
        read_hrnet_csv(label, strict=True)


def test_a_plain_csv_with_a_scale_column_is_not_taken_as_csv_points(tmp_path):
    """The HRNet header is recognised by its names; a plain CSV keeps the csv format."""
    _image(tmp_path / "a.png")
    plain = tmp_path / "p.csv"
    plain.write_text("file,x0,y0,x1,y1,x2,y2\na.png,1,2,3,4,5,6\n")
    assert D.detect_format(plain) == "csv"


def test_hrnet_values_beyond_float32_are_skipped_not_made_inf(tmp_path):
    """The tables hold float32: a value the float64 parse accepts but float32 cannot hold is a bad
    field, as in the CSV readers, not an inf in the table."""
    label, faces = _hrnet_aflw(tmp_path)
    lines = label.read_text().splitlines()
    cells = lines[1].split(",")
    lines[1] = ",".join(cells[:9] + ["-4e38"] + cells[10:])
    label.write_text("\n".join(lines) + "\n")
    table = D.read_dataset(label)
    assert len(table) == 1 and np.isfinite(table.points).all()
    assert table.skipped[0]["reason"] == ("image 'flickr/0/image00002.jpg': field 10 (x2) is '-4e38', expected a "
                                          "finite number")
