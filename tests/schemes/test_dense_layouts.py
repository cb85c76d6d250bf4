"""Dense layouts: flip pairs inferred on a 971-point version of ytf68 (true pairs known by
construction), per-part confidence, and parts in scheme files."""

import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import augkit as ak
from augkit.cli import main
from augkit.schemes import parse_parts
from augkit.show import normalised_mean_shape

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import dense971  # noqa: E402

pytest.importorskip("scipy")


@pytest.fixture(scope="module")
def labels68(ytf68):
    return dense971._read68(ytf68 / "train" / "landmarks.csv")


@pytest.fixture(scope="module")
def faces68(labels68):
    return labels68[1]  # the whole train split: 3,376 faces (about a second per dense variant)


@pytest.mark.parametrize("variant", dense971.VARIANTS)
def test_infer_finds_the_true_pairs_on_every_dense_variant(faces68, variant):
    from augkit.symmetry import infer_pairs, perm_from_pairs
    dense = dense971.dense_points(faces68, variant)
    shape, _ = normalised_mean_shape(dense)
    pairs, _ = infer_pairs(shape)          # no parts: a user may not know them
    got = perm_from_pairs(pairs, 971)
    truth = perm_from_pairs(dense971.true_pairs(variant), 971)
    assert (got == truth).mean() >= 0.995
    # where a partner is wrong, it must be a point within 0.01 inter-ocular distances of the true one
    mean_px = np.nanmean(dense, axis=0)
    m68 = faces68.mean(axis=0)
    iod = np.linalg.norm(m68[36] - m68[45])
    off = np.linalg.norm(mean_px[got] - mean_px[truth], axis=1) / iod
    assert off.max() <= 0.01


def test_ytf68_still_gives_the_ibug_pairs(faces68):
    from augkit.symmetry import infer_pairs
    pairs, _ = infer_pairs(normalised_mean_shape(faces68)[0])
    assert set(pairs) == set(ak.IBUG68.flip_pairs)


def _write_dense(tmp_path, labels68, ytf68, variant="smooth", n=1200):
    """A dataset folder of the first n faces of a dense variant (images linked to ytf68's)."""
    d = tmp_path / variant
    d.mkdir()
    (d / "images").symlink_to(ytf68 / "train" / "images")
    dense = dense971.dense_points(labels68[1][:n], variant)
    dense971._write_labels(d / "landmarks.csv", labels68[0][:n], dense)
    return d


def test_check_says_which_parts_are_certain_and_flags_a_shifted_pairing(tmp_path, labels68, ytf68):
    data = _write_dense(tmp_path, labels68, ytf68)
    true = dense971.true_scheme("smooth")
    ak.get_scheme(true).save(str(tmp_path / "true.yaml"))
    res = CliRunner().invoke(main, ["scheme", "check", "--data", str(data), "--scheme", str(tmp_path / "true.yaml")])
    assert res.exit_code == 0, res.output
    for part in dense971.PARTS:
        assert any(line.startswith(part) and line.endswith("certain") for line in res.output.splitlines()), part
    assert "pairs look right" in res.output
    # the contour paired i <-> 271 - i (one sample off), as the old infer returned it
    shifted = dict(true)
    shifted["flip_pairs"] = ([[i, 271 - i] for i in range(136)]
                             + [p for p in true["flip_pairs"] if p[0] > 272])
    ak.get_scheme(shifted).save(str(tmp_path / "shifted.yaml"))
    res = CliRunner().invoke(main, ["scheme", "check", "--data", str(data), "--scheme", str(tmp_path / "shifted.yaml")])
    assert res.exit_code == 0, res.output
    assert "pairs look right" not in res.output
    assert "WARNING: contour is not certain" in res.output
    assert "WARNING: eyes" not in res.output


def test_infer_completes_made971_with_its_parts(tmp_path, labels68, ytf68):
    data = _write_dense(tmp_path, labels68, ytf68, "uneven")
    res = CliRunner().invoke(main, ["scheme", "infer", "--data", str(data), "--scheme", "made971",
                                    "--out", str(tmp_path / "s.yaml")])
    assert res.exit_code == 0, res.output
    sch = ak.get_scheme(str(tmp_path / "s.yaml"))
    assert sch.parts == ak.get_scheme("made971").parts and sch.norm == (969, 970)
    assert set(sch.flip_pairs) == set(dense971.true_pairs("uneven"))
    of = sch.part_index()
    assert all(of[a] == of[b] for a, b in sch.flip_pairs)
    # --parts on the command line does the same for a layout without a built-in scheme
    res = CliRunner().invoke(main, ["scheme", "infer", "--data", str(data), "--out", str(tmp_path / "p.yaml"),
                                    "--parts", "contour:0-272,brows:273-400,rest:401-970"])
    assert res.exit_code == 0, res.output
    assert [n for n, _ in ak.get_scheme(str(tmp_path / "p.yaml")).parts] == ["contour", "brows", "rest"]


def test_a_wrong_point_count_for_the_scheme_is_one_line(tmp_path, labels68, ytf68):
    data = _write_dense(tmp_path, labels68, ytf68, n=50)
    res = CliRunner().invoke(main, ["scheme", "check", "--data", str(data)])
    assert res.exit_code == 1
    assert "the data has 971 points per face, the scheme 'ibug68' has 68" in res.output


@pytest.mark.parametrize("scheme, message", [
    ({"n_points": 10, "parts": {"a": [0, 5], "b": [5, 9]}}, "parts: 'a' and 'b' overlap (index 5)"),
    ({"n_points": 10, "parts": {"a": [0, 10]}}, "parts: 'a' is 0-10, expected a range low-high inside 0..9"),
    ({"n_points": 10, "parts": {"a": [6, 2]}}, "parts: 'a' is 6-2"),
    ({"n_points": 10, "parts": {"a": "0-4", "b": [5, 9]}, "flip_pairs": [[1, 7]]},
     "flip_pairs: pair [1, 7] crosses two parts (a and b)"),
    ({"n_points": 10, "parts": {"a": [0, 4]}, "mirror_parts": [["a", "c"]]}, "mirror_parts: ['a', 'c'] must name"),
    ({"n_points": 10, "parts": ["a"]}, "parts must be a mapping name -> [low, high]"),
    ({"n_points": 10, "parts": {"a": [0, 1.5]}}, "has index 1.5, expected a whole number"),
])
def test_bad_parts_in_a_scheme_file_name_the_field(tmp_path, scheme, message):
    import yaml
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(scheme))
    with pytest.raises(ValueError, match=None) as e:
        ak.get_scheme(str(path))
    assert str(path) in str(e.value) and message in str(e.value)


def test_mirror_parts_allow_pairs_between_two_parts():
    sch = ak.get_scheme({"n_points": 4, "parts": {"l": [0, 1], "r": [2, 3]}, "mirror_parts": [["l", "r"]],
                         "flip_pairs": [[0, 3], [1, 2]]})
    assert sch.to_dict()["mirror_parts"] == [["l", "r"]]
    assert ak.get_scheme(sch.to_dict()) == sch


def test_parse_parts_errors_name_the_item():
    assert parse_parts("a:0-3, b:4-9") == (("a", (0, 3)), ("b", (4, 9)))
    for bad in ("a:0", "a-3", ":0-3", "a:x-3", ""):
        with pytest.raises(ValueError, match="--parts"):
            parse_parts(bad)


def test_batched_weight_fit_equals_the_nnls_solver():
    from augkit.tta.fit import simplex_qp, simplex_qp_batch
    rng = np.random.default_rng(3)
    for m in range(1, 6):
        r = rng.normal(size=(40, 30, m)) + rng.normal(size=(40, 30, 1))
        r[:, :, 0] *= 3  # one member much worse: its weight hits the bound
        grams = np.einsum("kni,knj->kij", r, r)
        target = rng.dirichlet(np.ones(m))
        for lam in (0.0, 0.1, 3.0, float("inf")):
            got = simplex_qp_batch(grams, target, lam)
            want = np.stack([simplex_qp(g, target, lam) for g in grams])
            np.testing.assert_allclose(got, want, atol=1e-7)
            assert (got >= 0).all() and np.allclose(got.sum(axis=1), 1)


def test_evaluate_reports_each_part():
    pytest.importorskip("torch")
    from augkit.tta.evaluate import EvalAccumulator
    sch = ak.get_scheme({"n_points": 4, "norm": [0, 1], "parts": {"a": [0, 1], "b": [2, 3]}})
    truth = np.zeros((2, 4, 2))
    truth[:, 1, 0] = 10.0                       # norm: 10 px
    pred = truth.copy()
    pred[:, 2, 0] += 3.0                        # part b: one point 3 px off in x
    pred[1, 3, 1] += 4.0                        # and one 4 px off in y in the second image
    acc = EvalAccumulator(4, sch)
    acc.add(pred, np.zeros((2, 4)), truth, np.arange(2))
    parts = acc.result()["parts"]
    assert parts["a"] == {"mse": 0.0, "nme": 0.0}
    assert parts["b"]["mse"] == pytest.approx((9 + 9 + 16) / 8)
    assert parts["b"]["nme"] == pytest.approx((0.3 + 0.3 + 0 + 0.4) / 4)


def test_show_colours_points_by_part(tmp_path, labels68, ytf68):
    import cv2
    from augkit.show import PART_COLOURS
    data = _write_dense(tmp_path, labels68, ytf68, n=20)
    ak.get_scheme(dense971.true_scheme("smooth")).save(str(tmp_path / "s.yaml"))
    out = tmp_path / "g.png"
    res = CliRunner().invoke(main, ["show", "--data", str(data), "--scheme", str(tmp_path / "s.yaml"), "--n", "4",
                                    "--size", "160", "--colour", "part", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rgb = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB).reshape(-1, 3)
    for colour in PART_COLOURS[:6]:             # six parts, six colours
        assert np.all(rgb == colour, axis=1).sum() > 0, colour


@pytest.mark.slow
@pytest.mark.parametrize("head", ["regression", "rle", "integral", "simcc"])
def test_971_points_train_fit_and_predict_a_submission(tmp_path, labels68, ytf68, head):
    """The whole hand-off at K = 971 for every head: a tiny model, per-landmark TTA weights (and the
    σ calibration for the heads with σ), 30 listed points, every point with its σ."""
    sigma = head != "regression"
    pytest.importorskip("torch")
    import subprocess
    root = dense971.build(tmp_path, "smooth", ytf68, limit=120)
    run = tmp_path / "run"
    cli = [sys.executable, "-m", "augkit.cli"]
    res = subprocess.run(cli + ["train", "--data", str(root / "train"), "--scheme", str(root / "true.yaml"),
                                "--backbone", "tiny", "--size", "32", "--epochs", "1", "--out", str(run), "--quiet",
                                "--workers", "0", "--seed", "0", "--val-fraction", "0.25", "--head", head],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    res = subprocess.run(cli + ["tta", "fit", "--run", str(run), "--tta", "flip", "--level", "landmark"]
                         + (["--calibrate"] if sigma else []), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "fitted per member x landmark" in res.stdout and "chosen: " in res.stdout   # weights per landmark at K=971
    assert "wrote " in res.stdout and (run / "tta.yaml").is_file()
    assert ("σ calibration: sigma_scale" in res.stdout) == sigma
    res = subprocess.run(cli + ["predict", "--run", str(run), "--data", str(root / "test"),
                                "--out", str(tmp_path / "sub.csv")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = (tmp_path / "sub.csv").read_text().splitlines()
    assert len(lines) == 121 and len(lines[0].split(",")) == 1 + 2 * 30
    if sigma:   # every point, its spread and its σ: 971 x (2 + 1 + 1) columns
        res = subprocess.run(cli + ["predict", "--run", str(run), "--data", str(root / "test"), "--format", "csv",
                                    "--uncertainty", "--out", str(tmp_path / "all.csv")],
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stdout + res.stderr
        head_row, row = (tmp_path / "all.csv").read_text().splitlines()[:2]
        assert head_row.split(",")[-1] == "Point_970_SIGMA" and len(row.split(",")) == 1 + 4 * 971
        assert (np.array(row.split(",")[1 + 3 * 971:], float) > 0).all()
    res = subprocess.run(cli + ["evaluate", "--run", str(run), "--data", str(root / "test"), "--tta", "none",
                                "--png", ""], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "per part, MSE / NME:" in res.stdout and "contour" in res.stdout and "pupils" in res.stdout
    assert not list(tmp_path.glob("*.png")) and "calibration.png" not in res.stdout   # --png "": no picture at all
