"""The torch-free data layer (augkit.data): no torch or pandas on import or in `augkit show`, the
format registry, test_points.csv read as the TSV it is (every bad file one clear line naming the
file and the line; names read back exactly as written), and the names that moved keep working."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

import augkit.data as D
from augkit.data import DatasetError, read_test_points

ROOT = Path(__file__).resolve().parents[2]
HEADER = "file_name\tpoint_index_list\n"


def _run(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=180, cwd=cwd, check=False)


def _tiny_dataset(folder: Path, n: int = 3, k: int = 68) -> Path:
    """landmarks.csv + images/ with ``n`` 48x40 PNGs and ``k`` points each."""
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["file_name\t" + "\t".join(f"Point_{i}_{a}" for i in range(k) for a in "XY")]
    for i in range(n):
        cv2.imwrite(str(folder / "images" / f"f{i}.png"), rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
        pts = rng.uniform(5, 35, (k, 2))
        rows.append(f"f{i}.png\t" + "\t".join(f"{v:.2f}" for v in pts.ravel()))
    (folder / "landmarks.csv").write_text("\n".join(rows) + "\n")
    return folder


# ------------------------------------------------------------------------------ light imports

def test_import_augkit_data_loads_no_torch_and_no_pandas(tmp_path):
    r = _run("""
        import sys, augkit.data
        table = augkit.data.FORMAT_NAMES
        assert 'torch' not in sys.modules and 'pandas' not in sys.modules, sorted(sys.modules)
        print('ok')
    """, tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


@pytest.mark.parametrize("with_data", [False, True])
def test_augkit_show_loads_no_torch(tmp_path, with_data):
    """The library path of `augkit show` (CLI -> augkit.data.grid_samples -> show_grid), on the demo
    faces and on a real label file, imports neither torch nor pandas."""
    data = ["--data", str(_tiny_dataset(tmp_path / "set"))] if with_data else []
    r = _run(f"""
        import sys
        from augkit.cli import main
        main(["show", *{data!r}, "--n", "2", "--size", "32", "--out", "grid.png"], standalone_mode=False)
        heavy = [m for m in ("torch", "torchvision", "pandas") if m in sys.modules]
        assert not heavy, heavy
        print("ok")
    """, tmp_path)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
    assert (tmp_path / "grid.png").stat().st_size > 0


def _imported_modules(path: Path) -> list:
    tree = ast.parse(path.read_text())
    names = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0]
    return names + [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]


def test_the_data_layer_imports_no_torch_pandas_or_layer_above_it():
    files = sorted((ROOT / "augkit" / "data").rglob("*.py"))
    assert ROOT / "augkit" / "data" / "formats.py" in files
    up = {str(f.relative_to(ROOT)): m for f in files for m in _imported_modules(f)
          if m.startswith(("augkit.train", "augkit.tta", "augkit.models", "torch", "pandas"))}
    assert up == {}


# -------------------------------------------------------------------------------- the registry

def test_format_names_come_from_the_registry():
    assert D.FORMAT_NAMES == D.format_names() == ("coco", "competition", "csv", "hrnet", "pts", "wflw")


def test_a_new_format_is_one_registry_entry(tmp_path, monkeypatch):
    """Registering a format makes read_dataset detect and read it, and adds its name."""
    import augkit.data.formats as F
    monkeypatch.setattr(F, "_REGISTRY", dict(F._REGISTRY))
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "points.json").write_text("[[1, 2], [3, 4]]")

    def read(path, strict, images):
        return D.LandmarkTable([str(tmp_path / "a.png")], np.array([[[1, 2], [3, 4]]]), root=str(tmp_path),
                               format="json", source=path)
    D.register(D.LabelFormat("json", lambda p: p.endswith(".json"), read, "one face as JSON"))
    assert "json" in D.format_names()
    assert D.detect_format(tmp_path / "points.json") == "json"
    table = D.read_dataset(tmp_path / "points.json")
    assert table.format == "json" and table.points.shape == (1, 2, 2) and table.points.dtype == np.float32
    with pytest.raises(DatasetError, match="unknown dataset format 'xml'; expected one of coco, competition, csv, hrnet, json, pts, wflw"):
        D.read_dataset(tmp_path, format="xml")


def test_detection_order_pts_before_a_lone_csv(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((20, 20, 3), np.uint8))
    (tmp_path / "a.pts").write_text("version: 1\nn_points: 2\n{\n3 4\n5 6\n}\n")
    (tmp_path / "notes.csv").write_text("x\n")
    assert D.detect_format(tmp_path) == "pts"
    table = D.read_dataset(tmp_path)
    np.testing.assert_array_equal(table.points[0], [[2, 3], [4, 5]])


def test_undetectable_folder_says_what_it_looked_for(tmp_path):
    (tmp_path / "a.csv").write_text("x\n")
    (tmp_path / "b.csv").write_text("x\n")
    with pytest.raises(DatasetError, match=r"cannot tell the dataset format \(no landmarks.csv, no .pts files, "
                                           r"2 CSV files\); pass --format"):
        D.detect_format(tmp_path)
    with pytest.raises(DatasetError, match="no such file or folder"):
        D.detect_format(tmp_path / "missing")


# ------------------------------------------------------------------------ one home per name

def test_shared_names_are_the_same_objects():
    from augkit import io
    from augkit.train import data
    assert data.PERSON_REGEX is D.PERSON_REGEX
    assert D.IMAGE_EXTENSIONS is io.IMAGE_EXTENSIONS
    assert ".jp2" in io.IMAGE_EXTENSIONS and len(set(io.IMAGE_EXTENSIONS)) == len(io.IMAGE_EXTENSIONS)


def test_image_extensions_defined_once():
    defined = [str(f.relative_to(ROOT)) for f in (ROOT / "augkit").rglob("*.py")
               if "IMAGE_EXTENSIONS = (" in f.read_text()]
    assert defined == ["augkit/io.py"]


# ---------------------------------------------------------------------------- test_points.csv

def _tp(tmp_path, data: bytes | str) -> Path:
    p = tmp_path / "test_points.csv"
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return p


def _one_line_error(path, *needles) -> str:
    with pytest.raises(DatasetError) as e:
        read_test_points(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg, msg
    assert all(n in msg for n in needles), msg
    return msg


def test_test_points_row_with_an_extra_field(tmp_path):
    p = _tp(tmp_path, HEADER + "a.jpg\t[1, 2]\nb.jpg\t[3]\textra\n")
    _one_line_error(p, "line 3:", "3 tab-separated fields, expected 2", "file_name, point_index_list")


def test_test_points_row_with_a_missing_field(tmp_path):
    p = _tp(tmp_path, HEADER + "a.jpg [1, 2]\n")
    _one_line_error(p, "line 2:", "1 tab-separated fields, expected 2")


@pytest.mark.parametrize("text", ["", "\n\n", "  \r\n"])
def test_test_points_empty_file(tmp_path, text):
    p = _tp(tmp_path, text)
    _one_line_error(p, "the file is empty", "expected a header line 'file_name<TAB>point_index_list'")


def test_test_points_header_only(tmp_path):
    p = _tp(tmp_path, HEADER)
    _one_line_error(p, "no rows", "only its header (line 1)", "one line per test image")


def test_test_points_not_utf8(tmp_path):
    p = _tp(tmp_path, HEADER.encode() + "caf\u00e9.jpg\t[1]\n".encode("cp1252"))
    _one_line_error(p, "line 2:", "byte 0xe9", "not UTF-8", "re-save it as UTF-8")


def test_test_points_wrong_header_and_bad_list_and_empty_name(tmp_path):
    _one_line_error(_tp(tmp_path, "file_name,point_index_list\na.jpg,[1]\n"), "line 1 (header)",
                    "expected the tab-separated columns file_name, point_index_list")
    _one_line_error(_tp(tmp_path, HEADER + "a.jpg\t[1, -2]\n"), "line 2: file 'a.jpg': field point_index_list",
                    "not a list of non-negative integers")
    _one_line_error(_tp(tmp_path, HEADER + "a.jpg\t[True]\n"), "line 2", "not a list of non-negative integers")
    _one_line_error(_tp(tmp_path, HEADER + "\t[1]\n"), "line 2: field file_name is empty")
    _one_line_error(tmp_path / "nowhere.csv", "test points file not found")


def test_test_points_names_read_back_exactly_as_written(tmp_path):
    """A TSV has no quoting: a name starting with a quote, with spaces, commas, tabs-free unicode
    reads back byte for byte; the list field may carry CSV quotes (unwrapped)."""
    names = ['"quoted.jpg', "it's.png", 'say "hi".png', "two  spaces .jpg", " lead.png", "é 名前.jpg",
             "a,b.jpg", '"both".jpg']
    lines = [f"{n}\t[{i}, {i + 1}]" for i, n in enumerate(names)]
    lines.insert(3, "")                       # a blank line is skipped
    lines.append('last.jpg\t"[7, 8]"')        # a CSV writer's quotes around the list
    p = _tp(tmp_path, "\ufeff" + HEADER.replace("\n", "\r\n") + "\r\n".join(lines) + "\r\n")
    got = read_test_points(p)
    assert [n for n, _ in got] == names + ["last.jpg"]
    assert [idx for _, idx in got] == [[i, i + 1] for i in range(len(names))] + [[7, 8]]
    assert read_test_points(tmp_path) == got


def test_test_points_quoted_name_finds_its_image(tmp_path):
    """The name as written is the file on disk (not renamed by CSV unquoting)."""
    (tmp_path / "images").mkdir()
    name = '"odd name.png'
    cv2.imwrite(str(tmp_path / "images" / name), np.zeros((8, 8, 3), np.uint8))
    _tp(tmp_path, HEADER + f"{name}\t[0]\n")
    (got, _), = read_test_points(tmp_path)
    assert (tmp_path / "images" / got).is_file()


@pytest.mark.parametrize("listed, want", [
    ("[]", []), ("[ ]", []), ("[3,]", [3]), ("[ 4 , 5 ]", [4, 5]), ("(1, 2)", [1, 2]), ('"[7, 8]"', [7, 8]),
    ("[1,,2]", None), ("[1 2]", None), ("[,]", None), ("[-1]", None), ("[1.0]", None), ("[True]", None),
    ("[x]", None), ("", None),
])
def test_test_points_lists_read_as_python_reads_them(tmp_path, listed, want):
    p = _tp(tmp_path, HEADER + f"a.jpg\t{listed}\n")
    if want is None:
        _one_line_error(p, "line 2: file 'a.jpg': field point_index_list", "not a list of non-negative integers")
    else:
        assert read_test_points(p) == [("a.jpg", want)]


def test_large_test_points_file_reads_in_seconds(tmp_path):
    import time
    rng = np.random.default_rng(1)
    rows = [(f"img{i}.jpg", sorted(rng.choice(971, 300, replace=False).tolist())) for i in range(5000)]
    p = _tp(tmp_path, HEADER + "".join(f"{n}\t{idx}\n" for n, idx in rows))
    t0 = time.perf_counter()
    got = read_test_points(p)
    took = time.perf_counter() - t0
    assert got == rows
    assert took < 10, f"5000 rows took {took:.1f}s"
