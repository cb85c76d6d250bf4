"""Readers: competition TSV, plain CSV, 300-W .pts; bad rows skipped and counted or fatal with
--strict; images decoded by content; test_points.csv; the real ytf68 files."""

import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from augkit.data import (
    DatasetError,
    detect_format,
    read_dataset,
    read_test_points,
    verify_images,
)

from helpers import YTF68  # noqa: E402


def _img(path, h=40, w=50, kind="rgb", ext=".png"):
    rng = np.random.default_rng(abs(hash(str(path))) % 2**31)
    if kind == "gray":
        a = rng.integers(0, 255, (h, w), dtype=np.uint8)
    elif kind == "rgba":
        a = rng.integers(0, 255, (h, w, 4), dtype=np.uint8)
    elif kind == "16bit":
        a = rng.integers(0, 65535, (h, w, 3), dtype=np.uint16)
    else:
        a = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, a)
    assert ok
    Path(path).write_bytes(buf.tobytes())


def _competition(tmp_path, rows, k=3, header=True, images=("a.jpg", "b.jpg", "c.jpg")):
    (tmp_path / "images").mkdir(exist_ok=True)
    for n in images:
        _img(tmp_path / "images" / n)  # PNG bytes named .jpg: decoded by content
    lines = []
    if header:
        lines.append("\t".join(["file_name"] + [f"Point_{i}_{a}" for i in range(k) for a in "XY"]))
    lines += rows
    (tmp_path / "landmarks.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_competition_good_int_and_float(tmp_path):
    _competition(tmp_path, ["a.jpg\t1\t2\t3\t4\t5\t6", "b.jpg\t1.5\t2.25\t3\t4\t5\t6.75"])
    assert detect_format(tmp_path) == "competition"
    t = read_dataset(tmp_path)
    assert t.format == "competition" and len(t) == 2 and t.skipped == []
    assert t.points.dtype == np.float32 and t.points.shape == (2, 3, 2)  # float32 since issue 7
    np.testing.assert_array_equal(t.points[0], [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(t.points[1, 0], [1.5, 2.25])
    assert t.files[0] == str(tmp_path / "images" / "a.jpg") and os.path.isabs(t.files[1])
    assert t.root == str(tmp_path / "images")
    # the parent folder with train/ is found as well
    assert len(read_dataset(tmp_path / "landmarks.csv")) == 2


def test_competition_parent_with_train_folder(tmp_path):
    (tmp_path / "train").mkdir()
    _competition(tmp_path / "train", ["a.jpg\t1\t2\t3\t4\t5\t6"])
    t = read_dataset(tmp_path)
    assert len(t) == 1 and t.files[0].endswith(os.path.join("train", "images", "a.jpg"))


BROKEN = [
    "a.jpg\t1\t2\t3\t4\t5\t6",            # line 2: fine
    "missing.jpg\t1\t2\t3\t4\t5\t6",      # line 3: image not found
    "b.jpg\t1\t2\t3\t4\t5",               # line 4: too few values
    "c.jpg\t1\t2\tabc\t4\t5\t6",          # line 5: non-numeric Point_1_X
    "b.jpg\t1\t2\t3\tnan\t5\t6",          # line 6: NaN Point_1_Y
    "c.jpg\t1\t2\t3\t4\t5\t6\t7",         # line 7: too many values
    "c.jpg\t1\t2\t3\t4\t5\t6",            # line 8: fine
]


def test_competition_broken_rows_are_skipped_and_counted(tmp_path):
    _competition(tmp_path, BROKEN)
    t = read_dataset(tmp_path)
    assert len(t) == 2 and [os.path.basename(f) for f in t.files] == ["a.jpg", "c.jpg"]
    assert len(t.skipped) == 5
    by_row = {s["row"]: s["reason"] for s in t.skipped}
    assert set(by_row) == {3, 4, 5, 6, 7}
    assert "missing.jpg" in by_row[3] and "not found" in by_row[3]
    assert "5 values, expected 6" in by_row[4]
    assert "Point_1_X" in by_row[5] and "'abc'" in by_row[5]
    assert "Point_1_Y" in by_row[6]
    assert "7 values" in by_row[7]
    assert all(s["file"].endswith("landmarks.csv") for s in t.skipped)
    out = tmp_path / "skipped.csv"
    t.write_skipped(out)
    text = out.read_text().splitlines()
    assert text[0] == "file,row,reason" and len(text) == 6


@pytest.mark.parametrize("row, needle", [
    ("missing.jpg\t1\t2\t3\t4\t5\t6", "line 2: image 'missing.jpg' not found"),
    ("a.jpg\t1\t2\t3\t4\t5", "line 2: file 'a.jpg': 5 values"),
    ("a.jpg\t1\t2\tx\t4\t5\t6", "line 2: file 'a.jpg': field Point_1_X 'x' is not a finite number"),
    ("a.jpg\t1\t2\t3\t4\t5\t", "line 2: file 'a.jpg': field Point_2_Y is empty"),
])
def test_strict_names_file_row_and_field(tmp_path, row, needle):
    _competition(tmp_path, [row, "b.jpg\t1\t2\t3\t4\t5\t6"])
    with pytest.raises(DatasetError) as e:
        read_dataset(tmp_path, strict=True)
    assert "landmarks.csv" in str(e.value) and needle in str(e.value)


def test_a_value_beyond_float32_is_one_counted_skip_without_a_numpy_warning(tmp_path):
    import warnings
    _competition(tmp_path, ["a.jpg\t1\t2\t1e39\t4\t5\t6", "b.jpg\t1\t2\t3\t4\t5\t6", "c.jpg\t1\t-2e40\t3\t4\t5\t6"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = read_dataset(tmp_path)
    assert len(t) == 1 and np.isfinite(t.points).all()
    reasons = [s["reason"] for s in t.skipped]
    assert len(reasons) == 2
    assert "field Point_1_X '1e39' is beyond the float32 range" in reasons[0]
    assert "field Point_0_Y '-2e40' is beyond the float32 range" in reasons[1]


def test_bad_header_and_empty_dataset(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "landmarks.csv").write_text("file_name\tPoint_0_X\tPoint_0_Z\nx.jpg\t1\t2\n")
    with pytest.raises(DatasetError, match="column 3 is 'Point_0_Z', expected 'Point_0_Y'"):
        read_dataset(tmp_path)
    (tmp_path / "landmarks.csv").write_text("file_name\tPoint_0_X\tPoint_0_Y\nx.jpg\t1\t2\n")
    with pytest.raises(DatasetError, match="empty"):
        read_dataset(tmp_path)
    (tmp_path / "landmarks.csv").write_text("")
    with pytest.raises(DatasetError, match="empty"):
        read_dataset(tmp_path, format="competition")


def test_corrupt_images_are_skipped_on_verify_and_kinds_decode(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    _img(d / "gray.jpg", kind="gray")
    _img(d / "rgba.png", kind="rgba")
    _img(d / "deep.png", h=33, w=21, kind="16bit")
    _img(d / "real.jpg", ext=".jpg")
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (d / "empty.png").write_bytes(b"")
    names = ["gray.jpg", "rgba.png", "deep.png", "real.jpg", "corrupt.jpg", "empty.png"]
    (tmp_path / "pts.csv").write_text("".join(f"{n},1,2,3,4\n" for n in names))
    t = read_dataset(tmp_path / "pts.csv")
    assert t.format == "csv" and len(t) == 6
    v = verify_images(t)
    assert [os.path.basename(f) for f in v.files] == names[:4]
    assert v.sizes.tolist() == [[50, 40], [50, 40], [21, 33], [50, 40]]
    reasons = {os.path.basename(s["file"]): s["reason"] for s in v.skipped}
    assert set(reasons) == {"corrupt.jpg", "empty.png"} and "not a decodable image" in reasons["corrupt.jpg"]
    with pytest.raises(DatasetError, match="corrupt.jpg"):
        verify_images(t, strict=True)


def test_plain_csv_comma_header_and_tab_without(tmp_path):
    _img(tmp_path / "a.png")
    _img(tmp_path / "b.png")
    (tmp_path / "with_header.csv").write_text("image,x0,y0,x1,y1\na.png,1,2,3,4\nb.png,5.5,6,7,8\n")
    t = read_dataset(tmp_path / "with_header.csv")
    assert t.format == "csv" and t.points.shape == (2, 2, 2) and t.points[1, 0, 0] == 5.5
    (tmp_path / "no_header.tsv").write_text("a.png\t1\t2\t3\t4\r\nb.png\t5\t6\t7\t8\r\n\r\n")
    t = read_dataset(tmp_path / "no_header.tsv", format="csv")
    assert len(t) == 2 and t.skipped == [] and t.points[1, 1].tolist() == [7, 8]
    (tmp_path / "odd.csv").write_text("a.png,1,2,3\n")
    with pytest.raises(DatasetError, match="odd"):
        read_dataset(tmp_path / "odd.csv")


def _pts(path, pts, wrapped=True, declared=None):
    body = "\n".join(f"{x} {y}" for x, y in pts)
    if wrapped:
        body = f"version: 1\nn_points:  {declared or len(pts)}\n{{\n{body}\n}}\n"
    Path(path).write_text(body)


def test_pts_with_and_without_wrapper_one_based(tmp_path):
    sub = tmp_path / "set" / "deep"
    sub.mkdir(parents=True)
    _img(sub / "one.jpg")
    _pts(sub / "one.pts", [(1, 1), (11.5, 21)])
    _img(tmp_path / "set" / "two.png")
    _pts(tmp_path / "set" / "two.pts", [(2, 3), (4, 5)], wrapped=False)
    _pts(tmp_path / "set" / "orphan.pts", [(2, 3), (4, 5)])          # no image
    _img(tmp_path / "set" / "bad.jpg")
    _pts(tmp_path / "set" / "bad.pts", [(2, 3), (4, 5)], declared=3)  # n_points lies
    _img(tmp_path / "set" / "three.jpg")
    _pts(tmp_path / "set" / "three.pts", [(2, 3), (4, 5), (6, 7)])   # a different K
    assert detect_format(tmp_path / "set") == "pts"
    t = read_dataset(tmp_path / "set")
    names = sorted(os.path.basename(f) for f in t.files)
    assert names == ["one.jpg", "two.png"]
    got = {os.path.basename(f): p for f, p in zip(t.files, t.points)}
    np.testing.assert_array_equal(got["one.jpg"], [[0, 0], [10.5, 20]])
    np.testing.assert_array_equal(got["two.png"], [[1, 2], [3, 4]])
    reasons = {os.path.basename(s["file"]): s["reason"] for s in t.skipped}
    assert "no image" in reasons["orphan.pts"] and "n_points says 3" in reasons["bad.pts"]
    assert "3 points, the other files have 2" in reasons["three.pts"]
    with pytest.raises(DatasetError, match=r"bad\.pts|orphan\.pts"):
        read_dataset(tmp_path / "set", strict=True)


def test_read_test_points(tmp_path):
    p = tmp_path / "test_points.csv"
    p.write_text("file_name\tpoint_index_list\nz.jpg\t[3, 1, 2]\na.jpg\t[0]\n")
    assert read_test_points(p) == [("z.jpg", [3, 1, 2]), ("a.jpg", [0])]
    assert read_test_points(tmp_path) == [("z.jpg", [3, 1, 2]), ("a.jpg", [0])]
    p.write_text("file_name\tpoint_index_list\nz.jpg\t[3, oops]\n")
    with pytest.raises(DatasetError, match="line 2: file 'z.jpg': field point_index_list"):
        read_test_points(p)


def test_large_label_file_parses_in_seconds(tmp_path):
    """100k rows x 68 points through the label parser (image lookup is tested above, on few files)."""
    import augkit.data.parser as P
    n, k = 100_000, 68
    rng = np.random.default_rng(0)
    vals = rng.integers(-5, 400, (n, 2 * k))
    header = "\t".join(["file_name"] + [f"Point_{i}_{a}" for i in range(k) for a in "XY"])
    import pandas as pd
    bulk = pd.DataFrame(vals)
    bulk.insert(0, "name", [f"img{i}.jpg" for i in range(n)])
    with open(tmp_path / "landmarks.csv", "w") as f:
        f.write(header + "\n")
        bulk.to_csv(f, sep="\t", header=False, index=False)
    t0 = time.perf_counter()
    parsed = P.parse_table(str(tmp_path / "landmarks.csv"), None, strict=False)
    took = time.perf_counter() - t0
    assert len(parsed.names) == n and parsed.skips.items == [] and parsed.names[-1] == f"img{n - 1}.jpg"
    assert parsed.values.dtype == np.float32
    np.testing.assert_array_equal(parsed.values, vals)
    assert parsed.line_no[0] == 2 and parsed.line_no[-1] == n + 1
    assert took < 10, f"100k rows took {took:.1f}s"


@pytest.fixture
def ytf():
    if not (YTF68 / "train" / "landmarks.csv").is_file():
        pytest.skip(f"ytf68 not found at {YTF68}")
    return YTF68


def test_ytf68_train_and_test_points(ytf):
    t = read_dataset(ytf / "train")
    assert t.format == "competition" and len(t) == 3376 and t.points.shape == (3376, 68, 2) and not t.skipped
    assert np.isfinite(t.points).all()
    v = verify_images(t.subset(np.arange(20)))
    assert len(v) == 20 and (v.sizes >= 90).all()
    tp = read_test_points(ytf / "test")
    assert len(tp) == 846 and tp[0][0] == "Luis_Fonsi_21_a.jpg" and len(tp[0][1]) == 30
    truth = read_dataset(ytf / "test" / "landmarks.csv")
    assert len(truth) == 846


# ------------------------------------------------------------ issue 7: headers, float32, loader defaults

def _points_file(path, header, rows, sep="\t"):
    lines = ([sep.join(header)] if header else []) + [sep.join([n] + [str(v) for v in vals]) for n, vals in rows]
    Path(path).write_text("\n".join(lines) + "\n")


def _two_rows(tmp_path, k=3):
    (tmp_path / "images").mkdir(exist_ok=True)
    for n in ("a.jpg", "b.jpg"):
        _img(tmp_path / "images" / n)
    rng = np.random.default_rng(1)
    return [("a.jpg", rng.integers(0, 40, 2 * k).tolist()), ("b.jpg", (rng.random(2 * k) * 40).round(3).tolist())]


@pytest.mark.parametrize("naming, seen", [
    (lambda i, a: f"Point_M{i}_{a}", "Point_M{i}_X / Point_M{i}_Y"),
    (lambda i, a: f"Point_{i}_{a}", "Point_{i}_X / Point_{i}_Y"),
    (lambda i, a: f"{a.lower()}{i}", "x{i} / y{i}"),
    (lambda i, a: f"{a}{i + 1}", "X{i} / Y{i}"),
    (None, "no header"),
])
def test_header_namings_and_headerless_read_the_same_float32_array(tmp_path, caplog, naming, seen):
    rows = _two_rows(tmp_path)
    header = None if naming is None else ["file_name"] + [naming(i, a) for i in range(3) for a in "XY"]
    _points_file(tmp_path / "landmarks.csv", header, rows)
    with caplog.at_level("INFO", logger="augkit.data.parser"):
        t = read_dataset(tmp_path)
    assert t.format == "competition" and t.points.dtype == np.float32 and t.points.shape == (2, 3, 2)
    want = np.array([v for _, v in rows], dtype=np.float64).astype(np.float32).reshape(2, 3, 2)
    np.testing.assert_array_equal(t.points, want)
    assert t.naming.startswith(seen)
    logged = [r.getMessage() for r in caplog.records if r.name == "augkit.data.parser"]
    assert len(logged) == 1 and seen in logged[0] and "landmarks.csv" in logged[0] and "3 points" in logged[0]
    assert t.files.dtype.kind == "U" and isinstance(t.files, np.ndarray)  # no per-row objects


@pytest.mark.parametrize("columns, needle", [
    (["file_name", "Point_M0_Y", "Point_M0_X"], "column 2 is 'Point_M0_Y', expected an x column"),
    (["file_name", "Point_M0_X", "Point_M1_X"], "column 3 is 'Point_M1_X', expected 'Point_M0_Y'"),
    (["file_name", "x0", "y0", "x2", "y2"], "column 4 is 'x2', expected 'x1'"),
    (["file_name", "x0", "y0", "y1", "x1"], "column 4 is 'y1', expected an x column"),
])
def test_headers_that_are_not_xy_pairs_in_order_are_refused(tmp_path, columns, needle):
    (tmp_path / "images").mkdir()
    _points_file(tmp_path / "landmarks.csv", columns, [("a.jpg", list(range(len(columns) - 1)))])
    with pytest.raises(DatasetError) as e:
        read_dataset(tmp_path)
    msg = str(e.value)
    assert "landmarks.csv" in msg and "line 1 (header)" in msg and needle in msg and "x, y column pairs" in msg


def test_float_formats_and_blocks_agree_with_python_float(tmp_path, monkeypatch):
    """The vectorised parser (ints, decimals, signs) and numpy's fallback (exponents, '+') give the
    values float() gives, across block boundaries."""
    import augkit.data.parser as P
    monkeypatch.setattr(P, "_BLOCK_BYTES", 64)  # many tiny blocks
    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(5)
    texts = []
    for i in range(40):
        _img(tmp_path / "images" / f"f{i}.png")
        kind = i % 4
        v = rng.normal(0, 300, 4)
        if kind == 0:
            texts.append([str(int(x)) for x in v])
        elif kind == 1:
            texts.append([f"{x:.3f}" for x in v])
        elif kind == 2:
            texts.append([f"{x:.2e}" for x in v])
        else:
            texts.append([f"+{abs(x):.1f}" for x in v])
    _points_file(tmp_path / "pts.csv", None, [(f"f{i}.png", t) for i, t in enumerate(texts)], sep=",")
    t = read_dataset(tmp_path / "pts.csv")
    want = np.array([[float(x) for x in row] for row in texts]).astype(np.float32).reshape(40, 2, 2)
    assert t.skipped == [] and len(t) == 40
    np.testing.assert_array_equal(t.points, want)
    assert t.lines.tolist() == list(range(1, 41))


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_make_loader_defaults_scale_with_the_cores(monkeypatch):
    from augkit.train import data as D
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert D.default_workers() == 31                       # no cap of 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert D.default_workers() == 7                        # shared among the node's processes
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert D.default_workers() == 0
    loader = D.make_loader(list(range(4)), 2, 3, None)
    assert loader.num_workers == 3 and loader.persistent_workers and loader.prefetch_factor == D.PREFETCH_FACTOR >= 2
    assert loader.worker_init_fn is D.worker_init
    monkeypatch.setattr(D, "default_workers", lambda: 5)
    assert D.make_loader(list(range(4)), 2, None, None).num_workers == 5
    assert D.make_loader(list(range(4)), 2, 0, None).num_workers == 0


def _threads_seen_dataset():
    from torch.utils.data import Dataset

    class ThreadsSeen(Dataset):
        """Each item: cv2.getNumThreads() as seen where the item is loaded."""

        def __len__(self):
            return 2

        def __getitem__(self, i):
            return cv2.getNumThreads()

    return ThreadsSeen()


def test_loader_workers_run_opencv_on_one_thread():
    from augkit.train import data as D
    cv2.setNumThreads(2)
    try:
        big = np.zeros((1500, 1500, 3), np.uint8)
        for _ in range(3):                                  # OpenCV's pool running in this process
            cv2.GaussianBlur(big, (15, 15), 3)
        loader = D.make_loader(_threads_seen_dataset(), 1, 2, None)
        loader.timeout = 60                                 # a worker hung on OpenCV's pool fails, not hangs
        assert [int(b) for b in loader] == [1, 1]
        assert cv2.getNumThreads() == 2                     # the main process is left alone
        cv2.GaussianBlur(big, (15, 15), 3)
    finally:
        cv2.setNumThreads(-1)


def test_file_source_keeps_the_table_arrays(tmp_path):
    from augkit.train import data as D
    _competition(tmp_path, ["a.jpg\t1\t2\t3\t4\t5\t6", "b.jpg\t1\t2\t3\t4\t5\t6"])
    t = read_dataset(tmp_path)
    src = D.FileSource(t)
    assert src.points is t.points and src.files.dtype.kind == "U"
    assert src.image(1).shape == (40, 50, 3)


def _private_mb() -> float:
    with open("/proc/self/smaps_rollup") as f:
        return sum(int(ln.split()[1]) for ln in f if ln.startswith(("Private_Dirty", "Private_Clean"))) / 1024


def _touch_dataset(source):
    from torch.utils.data import Dataset

    class Touch(Dataset):
        """Item 1 reads every row's points and file name in the worker; returns (private MB before, after)."""

        def __len__(self):
            return 2

        def __getitem__(self, i):
            before = _private_mb()
            if i == 1:
                total = 0.0
                for r in range(len(source.points)):
                    total += float(source.points[r, 0, 0]) + len(str(source.files[r]))
            return np.array([before, _private_mb()])

    return Touch()


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="needs Linux /proc/self/smaps_rollup")
def test_forked_workers_share_the_points_array():
    """A worker reading every row of a 40 MB table adds well under 4 MB of private memory: the
    points and names are single arrays whose pages the fork shares (no per-row objects to touch)."""
    from augkit.train import data as D
    from augkit.data import LandmarkTable
    n, k = 20_000, 250
    table = LandmarkTable([f"/data/images/img{i:06d}.jpg" for i in range(n)],
                          np.random.default_rng(0).random((n, k, 2), dtype=np.float32))
    source = D.FileSource(table)
    assert source.points.nbytes == 40_000_000 and source.files.dtype.kind == "U"
    loader = D.make_loader(_touch_dataset(source), 1, 1, None)
    before, after = next(b for i, b in enumerate(loader) if i == 1)[0].tolist()
    assert after - before < 4, f"the worker copied {after - before:.1f} MB"
