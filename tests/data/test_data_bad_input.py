"""Issue 8's catalogue, the data-reading cases: every bad label file or image ends as a clear
one-line error (file, row, field, what was found, what was expected; exit code != 0 on the CLI),
a counted skip whose reason is listed in skipped.csv, or correct handling.

One table row per case: (case id, outcome class, how to build the input, message keywords, where
the message is expected: the row of the label file for skips, the exit code for errors)."""

import csv
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from augkit.data import OUTSIDE_MARGIN, DatasetError, read_dataset, verify_images

W, H = 50, 40   # every image of these sets
HEADER = "file_name\t" + "\t".join(f"Point_{i}_{a}" for i in range(3) for a in "XY")
GOOD = "1\t2\t30\t20\t45\t35"


def _dataset(tmp_path: Path, rows, corrupt=(), header=HEADER, encoding="utf-8") -> Path:
    """A competition layout: landmarks.csv (``rows``: text lines) + one 50x40 PNG per file name
    (``corrupt``: names whose image holds garbage bytes)."""
    (tmp_path / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for line in rows:
        name = line.split("\t")[0]
        path = tmp_path / "images" / name
        if name in corrupt:
            path.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
        else:
            ok, buf = cv2.imencode(".png", rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
            path.write_bytes(buf.tobytes())
    (tmp_path / "landmarks.csv").write_bytes(("\n".join([header] + list(rows)) + "\n").encode(encoding))
    return tmp_path


def cp1252_name(t):
    # the second row's name holds 'é' written as cp1252 (byte 0xe9), not UTF-8
    d = _dataset(t, ["a.png\t" + GOOD, "b.png\t" + GOOD])
    os.rename(d / "images" / "b.png", d / "images" / "caf\xe9.png")
    raw = (d / "landmarks.csv").read_bytes().replace(b"b.png", b"caf\xe9.png")
    (d / "landmarks.csv").write_bytes(raw)
    return d


def utf8_name_with_bom(t):
    d = _dataset(t, ["a.png\t" + GOOD, "caf\u00e9.png\t" + GOOD])
    (d / "landmarks.csv").write_bytes(b"\xef\xbb\xbf" + (d / "landmarks.csv").read_bytes())
    return d


def far_outside(t):
    return _dataset(t, ["a.png\t" + GOOD, "b.png\t100000\t2\t30\t20\t45\t35", "c.png\t" + GOOD])


def just_outside(t):
    # x = -20 and y = 55 in a 50x40 image: outside, but within the margin (50% of 50 / of 40)
    return _dataset(t, ["a.png\t" + GOOD, "b.png\t-20\t2\t30\t55\t45\t35"])


def duplicate_name(t):
    return _dataset(t, ["a.png\t" + GOOD, "b.png\t" + GOOD, "a.png\t3\t4\t31\t21\t44\t34"])


def nan_literal(t):
    return _dataset(t, ["a.png\t" + GOOD, "b.png\t1\t2\t30\tNaN\t45\t35"])


def empty_field(t):
    return _dataset(t, ["a.png\t" + GOOD, "b.png\t1\t2\t30\t\t45\t35"])


def corrupt_image(t):
    return _dataset(t, ["a.png\t" + GOOD, "b.png\t" + GOOD, "c.png\t" + GOOD], corrupt={"b.png"})


# (case, outcome, build, strict, keywords, line in landmarks.csv of the skipped row)
CASES = [
    ("8.6", "error", cp1252_name, False,
     ["landmarks.csv", "line 3", "byte 0xe9", "not UTF-8", "expected a UTF-8 label file"], None),
    ("8.6-utf8", "handled", utf8_name_with_bom, False, ["caf\u00e9.png"], None),
    ("8.11-outside", "skip", far_outside, False,
     ["b.png", "labels far outside the image", "point 0 at (100000, 2)", f"{W}x{H} image",
      f"{OUTSIDE_MARGIN:.0%} of the image size"], 3),
    ("8.11-outside-strict", "error", far_outside, True,
     ["b.png", "line 3 of", "landmarks.csv", "labels far outside the image"], None),
    ("8.11-margin", "handled", just_outside, False, ["b.png"], None),
    ("8.11-duplicate", "skip", duplicate_name, False, ["file 'a.png'", "duplicate file name (also on line 2)"], 4),
    ("8.11-duplicate-strict", "error", duplicate_name, True,
     ["landmarks.csv, line 4", "file 'a.png'", "duplicate file name (also on line 2)"], None),
    ("8.11-nan", "skip", nan_literal, False, ["file 'b.png'", "field Point_1_Y is NaN"], 3),
    ("8.11-nan-strict", "error", nan_literal, True, ["landmarks.csv, line 3", "field Point_1_Y is NaN"], None),
    ("8.11-empty", "skip", empty_field, False, ["file 'b.png'", "field Point_1_Y is empty"], 3),
    ("8.12-corrupt", "skip", corrupt_image, False, ["not a decodable image"], 3),
    ("8.12-corrupt-strict", "error", corrupt_image, True,
     ["b.png", "line 3 of", "landmarks.csv", "not a decodable image"], None),
]


def _read(data: Path, strict: bool):
    """What training reads: labels, then every image decoded and checked against its labels."""
    return verify_images(read_dataset(data, strict=strict), strict=strict)


@pytest.mark.parametrize("case, outcome, build, strict, keywords, line", CASES, ids=[c[0] for c in CASES])
def test_data_catalogue(tmp_path, case, outcome, build, strict, keywords, line):
    data = build(tmp_path / "data")
    if outcome == "error":
        with pytest.raises(DatasetError) as e:
            _read(data, strict)
        msg = str(e.value)
        assert "\n" not in msg and all(k in msg for k in keywords), msg
        images = [k for k in keywords if k.endswith(".png")]
        for name in images:  # an image's path is named once
            assert msg.count(name) == 1, msg
        # the same on the command line: one line, exit code != 0, before any training
        from augkit.cli.train import train
        r = CliRunner().invoke(train, ["--data", str(data), "--out", str(tmp_path / "run"), "--backbone", "tiny",
                                       "--size", "32", "--epochs", "1", "--workers", "0", "--quiet", "--threads", "1"]
                               + (["--strict"] if strict else []))
        assert r.exit_code != 0, r.output
        out = r.output.strip()
        assert len(out.splitlines()) == 1 and out.startswith("Error:") and all(k in out for k in keywords), out
        assert not (tmp_path / "run" / "last.pt").exists()
        return
    table = _read(data, strict)
    names = [os.path.basename(f) for f in table.files]
    if outcome == "handled":
        assert table.skipped == [] and all(k in names for k in keywords)
        assert np.isfinite(table.points).all() and len(table) == len(names)
        return
    assert outcome == "skip"
    kept = [ln.split("\t")[0] for ln in (data / "landmarks.csv").read_text().splitlines()[1:]]
    del kept[line - 2]
    assert len(table.skipped) == 1 and names == kept, table.skipped   # the others, in file order
    table.write_skipped(tmp_path / "skipped.csv")
    with open(tmp_path / "skipped.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and int(rows[0]["row"]) == line
    text = f"{rows[0]['file']}: {rows[0]['reason']}"   # file: the label file, or the image for image checks
    assert all(k in text for k in keywords), rows[0]
