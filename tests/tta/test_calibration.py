"""The calibration of a model's per-landmark sigma (augkit.calibration), its place in `augkit
evaluate` (a calibration block per setting, calibration.png) and in the label audit (residuals
scored against sigma)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import YTF68, BlobModel, blob_set, python_prints_ok, write_oof_folds

import augkit as ak
from augkit import calibration as cal
from augkit.audit import DEFAULT_THRESHOLD, LabelAuditor


def _gaussian(n=4000, k=50, seed=0, truth_scale=1.0):
    """Predictions whose errors are isotropic Gaussians with per-axis std ``truth_scale x sigma``,
    sigma log-normal over images and points. Returns (pred, truth, sigma)."""
    rng = np.random.default_rng(seed)
    sigma = 2.0 * np.exp(rng.normal(0, 0.6, (n, 1)) + rng.normal(0, 0.3, (n, k)))
    truth = rng.uniform(0, 200, (n, k, 2))
    pred = truth + rng.normal(0, 1, (n, k, 2)) * (truth_scale * sigma)[..., None]
    return pred, truth, sigma


def test_import_stays_light():
    code = ("import sys; import augkit, augkit.calibration; "
            "assert 'matplotlib' not in sys.modules and 'torch' not in sys.modules and 'scipy' not in sys.modules; "
            "print('ok')")
    python_prints_ok(code)


def test_coverage_of_calibrated_gaussian_errors_is_what_the_gaussian_promises():
    pred, truth, sigma = _gaussian()
    c1, c2 = cal.coverage(pred, truth, sigma)
    assert cal.gaussian_coverage(1.0) == pytest.approx(0.3935, abs=1e-4)
    assert cal.gaussian_coverage(2.0) == pytest.approx(0.8647, abs=1e-4)
    assert c1 == pytest.approx(0.3935, abs=0.01) and c2 == pytest.approx(0.8647, abs=0.01)
    assert cal.ml_scale(pred, truth, sigma) == pytest.approx(1.0, rel=0.02)


def test_missing_points_are_left_out():
    pred, truth, sigma = _gaussian(n=500, k=10)
    truth[::3, 2] = np.nan
    pred[5] = np.nan
    sigma[7, 1], sigma[8, 4] = np.nan, 0.0
    c = cal.coverage(pred, truth, sigma)
    assert np.isfinite(c).all()
    r = cal.calibration_summary(pred, truth, sigma)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(truth).all(-1) & np.isfinite(pred).all(-1) & (sigma > 0)
    assert r["n_points"] == valid.sum() == 500 * 10 - 167 - 10 - 2
    assert r["n_images"] == 499
    assert c[0] == pytest.approx(np.mean(np.linalg.norm(pred - truth, axis=-1)[valid] <= sigma[valid]))


def test_sigma_half_the_real_error_gives_an_ml_scale_of_two():
    pred, truth, sigma = _gaussian(truth_scale=2.0, seed=1)
    assert cal.ml_scale(pred, truth, sigma) == pytest.approx(2.0, rel=0.05)
    c1, c2 = cal.coverage(pred, truth, sigma)
    assert c1 < 0.15 and c2 < 0.45     # within 1 sigma = within 0.5 real sigma: 11.8%; 2 sigma: 39.3%


def test_spearman_is_one_when_the_error_grows_with_sigma():
    rng = np.random.default_rng(2)
    sigma = np.exp(rng.normal(0, 1, (300, 20)))
    truth = rng.uniform(0, 100, (300, 20, 2))
    direction = rng.normal(0, 1, (300, 20, 2))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    pred = truth + direction * 1.7 * sigma[..., None]        # |error| = 1.7 sigma exactly
    rho_img, rho_pt = cal.rank_correlation(pred, truth, sigma)
    assert rho_img == pytest.approx(1.0) and rho_pt == pytest.approx(1.0)
    # the sample above max_pairs is a subsample, still perfectly ranked
    assert cal.rank_correlation(pred, truth, sigma, max_pairs=1000)[1] == pytest.approx(1.0)
    # ties averaged: as scipy's Spearman
    scipy = pytest.importorskip("scipy.stats")
    a, b = rng.integers(0, 6, 200).astype(float), rng.normal(0, 1, 200)
    assert cal.spearman(a, b + a) == pytest.approx(scipy.spearmanr(a, b + a).statistic)
    assert np.isnan(cal.spearman(np.ones(10), b[:10]))


def _same(a, b, where="result"):
    """Equal nested results, floats up to rounding (sums taken in another order)."""
    if isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for key in b:
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-12, nan_ok=True), where
    else:
        assert a == b, where


def test_streaming_accumulator_chunked_equals_all_at_once():
    pred, truth, sigma = _gaussian(n=900, k=30, seed=3)
    truth[::7, 3] = np.nan
    whole = cal.calibration_summary(pred, truth, sigma)
    acc = cal.CalibrationAccumulator()
    for a in range(0, len(pred), 97):
        acc.add(pred[a:a + 97], truth[a:a + 97], sigma[a:a + 97])
    chunked = acc.result()
    _same(chunked, whole)
    # and the streaming numbers are the in-memory functions'
    assert [whole["coverage_1"], whole["coverage_2"]] == pytest.approx(list(cal.coverage(pred, truth, sigma)))
    assert whole["scale"] == pytest.approx(cal.ml_scale(pred, truth, sigma))
    assert (whole["rho_image"], whole["rho_point"]) == pytest.approx(cal.rank_correlation(pred, truth, sigma))
    # beyond the sample the correlations come from a bounded sample, still close
    small = cal.CalibrationAccumulator(max_pairs=2000)
    for a in range(0, len(pred), 100):
        small.add(pred[a:a + 100], truth[a:a + 100], sigma[a:a + 100])
    assert small.result()["rho_point"] == pytest.approx(whole["rho_point"], abs=0.05)
    assert len(small._points.rows) <= 2000


def test_reliability_bins_follow_the_diagonal_when_calibrated():
    pred, truth, sigma = _gaussian(seed=4)
    rel = cal.reliability(pred, truth, sigma, n_bins=8)
    assert len(rel["count"]) == 8 and sum(rel["count"]) == sigma.size
    np.testing.assert_allclose(rel["rms_error"], rel["sigma_rms"], rtol=0.05)
    res = cal.calibration_summary(pred, truth, sigma)
    bins = res["reliability"]
    assert sum(bins["count"]) == sigma.size and len(bins["count"]) >= 5
    np.testing.assert_allclose(bins["rms_error"], bins["sigma_rms"], rtol=0.05)
    curve = res["coverage_curve"]
    np.testing.assert_allclose(curve["observed"], curve["promised"], atol=0.01)


def test_calibration_png_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    pred, truth, sigma = _gaussian(n=300, k=20)
    res = [cal.calibration_summary(pred, truth, sigma), cal.calibration_summary(pred, truth, 2 * sigma)]
    path = tmp_path / "calibration.png"
    cal.calibration_png(path, res, ["calibrated", "too wide"])
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="2 result"):
        cal.calibration_png(path, res, ["one"])


def test_bad_shapes_are_one_line_errors():
    pred, truth, sigma = _gaussian(n=10, k=5)
    with pytest.raises(ValueError, match=r"sigma must be \(images, points\)"):
        cal.coverage(pred, truth, sigma[:, :4])
    with pytest.raises(ValueError, match="labels must have the predictions' shape"):
        cal.ml_scale(pred, truth[:5], sigma)
    with pytest.raises(ValueError, match="no point with a finite prediction"):
        cal.CalibrationAccumulator().result()


# ------------------------------------------------------------------------------------ evaluate

def test_eval_accumulator_has_a_calibration_block_only_with_sigma():
    from augkit.tta.evaluate import EvalAccumulator
    pred, truth, sigma = _gaussian(n=200, k=6)
    spread = np.zeros(sigma.shape)
    plain = EvalAccumulator(6)
    plain.add(pred, spread, truth, np.arange(200))
    assert "calibration" not in plain.result()
    acc = EvalAccumulator(6)
    pred[3] = np.nan                                   # an unreadable image: left out of both
    for a in range(0, 200, 64):
        acc.add(pred[a:a + 64], spread[a:a + 64], truth[a:a + 64], np.arange(a, min(a + 64, 200)),
                sigma=sigma[a:a + 64])
    c = acc.result()["calibration"]
    keep = np.ones(200, bool)
    keep[3] = False
    _same(c, cal.calibration_summary(pred[keep], truth[keep], sigma[keep], seed=2))
    with pytest.raises(ValueError, match=r"sigma must be \(images, points\)"):
        acc.add(pred[:4], spread[:4], truth[:4], np.arange(4), sigma=sigma[:3])


def test_settings_chunk_merges_each_settings_sigma():
    from augkit.tta import get_spec
    from augkit.tta.evaluate import EvalAccumulator, add_settings_chunk, union_views
    rng = np.random.default_rng(5)
    specs = [get_spec("none"), get_spec("flip")]
    union, idx = union_views(specs, 1)
    n, k = 50, 4
    truth = rng.uniform(0, 100, (n, k, 2))
    msig = np.exp(rng.normal(0, 0.5, (n, len(union), k)))
    members = truth[:, None] + rng.normal(0, 1, (n, len(union), k, 2)) * msig[..., None]
    accs = [EvalAccumulator(k) for _ in specs]
    out = add_settings_chunk(accs, specs, idx, 1, members, truth, 0, member_sigma=msig)
    assert [len(o) for o in out] == [3, 3]
    np.testing.assert_allclose(out[0][2], msig[:, idx[0][0]])            # one member: its own sigma
    np.testing.assert_allclose(out[1][2], msig[:, idx[1]].mean(axis=1))   # plain weights: the mean
    assert all("calibration" in a.result() for a in accs)
    plain = add_settings_chunk([EvalAccumulator(k) for _ in specs], specs, idx, 1, members, truth, 0)
    assert [len(o) for o in plain] == [2, 2]


def _report_with_sigma(tmp_path):
    from augkit.tta.evaluate import EvalAccumulator
    from augkit.tta.evaluate import EvalReport
    pred, truth, sigma = _gaussian(n=300, k=6, seed=6)
    results = []
    for scale in (1.0, 0.5):
        acc = EvalAccumulator(6)
        acc.add(pred, np.zeros(sigma.shape), truth, np.arange(300), sigma=scale * sigma)
        results.append({**acc.result(), "members": 1})
    base = EvalAccumulator(6)
    base.add(truth.mean(axis=0)[None].repeat(300, 0), np.zeros(sigma.shape), truth, np.arange(300))
    return EvalReport("data", 300, 1, ["none", "flip"], results, base.result(), "labels", 0.08)


def test_evaluate_json_and_table_carry_the_calibration(tmp_path):
    from augkit.tta.evaluate import calibration_png
    from augkit.tta.evaluate import _write_json, report_lines
    report = _report_with_sigma(tmp_path)
    assert report.has_sigma
    js = tmp_path / "m.json"
    _write_json(report, js, ["model.pt"])
    rows = json.loads(js.read_text())["results"]
    c = rows[0]["calibration"]
    for key in ("coverage_1", "promised_1", "coverage_2", "promised_2", "rho_image", "rho_point", "scale",
                "reliability", "coverage_curve", "n_points"):
        assert key in c
    assert c["scale"] == pytest.approx(1.0, rel=0.1) and rows[1]["calibration"]["scale"] == pytest.approx(2.0, rel=0.1)
    lines = report_lines(report)
    at = lines.index("model sigma calibration:")
    assert "in_1sd (39.3%)" in lines[at + 1] and "ML_scale" in lines[at + 1]
    assert lines[at + 2].split()[0] == "none" and lines[at + 3].split()[0] == "flip"
    # without sigma: no calibration lines, no block
    for m in report.results:
        m.pop("calibration")
    assert not any("calibration" in line for line in report_lines(report))
    assert not report.has_sigma
    pytest.importorskip("matplotlib")
    assert calibration_png(tmp_path / "c.png", report.labels, report.results) == []
    assert not (tmp_path / "c.png").exists()


class SigmaBlobModel(BlobModel):
    """BlobModel that also reports a sigma: 0.5 px (model input) on every landmark."""

    has_sigma = True

    def call_with_sigma(self, batch):
        pts = self(batch)
        return pts, np.full(pts.shape[:2], 0.5)


def test_evaluate_command_reports_calibration_of_sigma_models(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from augkit.presets import preprocess_steps
    from augkit.tta import predictor
    if not hasattr(predictor, "model_has_sigma"):
        pytest.skip("the predictor does not carry sigma yet")
    from augkit.tta import runners
    from augkit.cli import main
    folder, _, _, ck = blob_set(tmp_path, seed=1)
    monkeypatch.setattr(runners, "load_models",
                        lambda paths, device="cpu": [SigmaBlobModel(ak.Compose(preprocess_steps(96, "letterbox")))
                                                     for _ in paths])
    png, js = tmp_path / "out" / "worst.png", tmp_path / "m.json"
    png.parent.mkdir()
    res = CliRunner().invoke(main, ["evaluate", "--checkpoint", ck, "--data", str(folder), "--tta", "flip",
                                    "--png", str(png), "--json", str(js), "--n-worst", "2"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "model sigma calibration:" in res.output and "ML_scale" in res.output
    cal_png = tmp_path / "out" / "calibration.png"
    assert cal_png.read_bytes()[:4] == b"\x89PNG" and f"wrote {cal_png}" in res.output
    d = json.loads(js.read_text())
    assert d["calibration_png"] == str(cal_png)
    assert [r["calibration"]["n_images"] for r in d["results"]] == [10, 10]


# ------------------------------------------------------------------------------------ audit

def _faces(n):
    if not (YTF68 / "train" / "landmarks.csv").is_file():
        pytest.skip(f"ytf68 not found at {YTF68}")
    with open(YTF68 / "train" / "landmarks.csv", encoding="utf-8") as f:
        rows = f.read().splitlines()[1:]
    rows = [r for r in rows if not r.startswith("Jane_Pauley_40_a.jpg")][:n]
    return np.array([np.asarray(r.split("\t")[1:], np.float64).reshape(68, 2) for r in rows])


@pytest.mark.parametrize("seed", [0, 1])
def test_audit_with_sigma_flags_points_far_beyond_sigma_and_spares_hard_faces(seed):
    """Heteroscedastic predictions: 40 hard faces whose model error (and sigma) is 5x the others'.
    Scored against sigma, labels with a few points moved 8 sigma off (and one label moved whole by
    4 sigma-implied pose errors) are the most suspect and flagged, and the hard faces' right labels
    are left alone; the regression scoring (no sigma) flags the hard faces instead."""
    rng = np.random.default_rng(seed)
    truth = _faces(400)
    n, k = truth.shape[:2]
    iod = np.linalg.norm(truth[:, 36] - truth[:, 45], axis=1)
    hard = np.zeros(n, bool)
    hard[rng.choice(np.arange(10, n), 40, replace=False)] = True
    level = np.where(hard, 5.0, 1.0) * np.exp(rng.normal(0, 0.2, n))
    sigma = 0.03 * iod[:, None] * level[:, None] * np.exp(rng.normal(0, 0.3, k))[None]
    pred = truth + rng.normal(0, 1, truth.shape) * sigma[..., None]
    spread = np.abs(rng.normal(0, 0.005, (n, k))) * iod[:, None]
    lab = truth.copy()
    for i in range(5):
        p = rng.choice(k, 4, replace=False)
        angle = rng.uniform(0, 2 * np.pi, 4)
        lab[i, p] += 8 * sigma[i, p, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    auditor = LabelAuditor(ak.IBUG68.perm, ak.IBUG68.norm)
    reported = 3.0 * sigma                       # a sigma off by a constant factor: the audit does not mind
    s = auditor.fit(lab, pred, spread, sigma=reported).score(lab, pred, spread, sigma=reported)
    assert auditor.with_sigma and set(np.argsort(-s.score)[:5]) == {0, 1, 2, 3, 4}
    assert (s.score[:5] > DEFAULT_THRESHOLD).all()
    assert (s.score[hard] > DEFAULT_THRESHOLD).sum() <= 2
    assert (s.score[5:][~hard[5:]] > DEFAULT_THRESHOLD).sum() == 0
    # scoring needs the sigma it was fitted with, and only then
    with pytest.raises(ValueError, match="fitted with the models' sigma"):
        auditor.score(lab, pred, spread)
    plain = LabelAuditor(ak.IBUG68.perm, ak.IBUG68.norm).fit(lab, pred, spread)
    with pytest.raises(ValueError, match="fitted without the models' sigma"):
        plain.score(lab, pred, spread, sigma=reported)
    assert (plain.score(lab, pred, spread).score[hard] > DEFAULT_THRESHOLD).sum() >= 30


def test_audit_scores_against_the_folds_sigma_files(tmp_path, monkeypatch):
    """The out-of-fold sigma is read from each fold's oof_sigma.npy like the other arrays (through
    memory maps, in chunks); without it in every fold the audit is the regression one."""
    from types import SimpleNamespace

    import augkit.audit.folds as A
    rng = np.random.default_rng(7)
    truth = _faces(120)
    iod = np.linalg.norm(truth[:, 36] - truth[:, 45], axis=1)
    sigma = 0.03 * iod[:, None] * np.where(np.arange(120) % 4 == 0, 5.0, 1.0)[:, None] * np.ones(68)
    pred = truth + rng.normal(0, 1, truth.shape) * sigma[..., None]
    spread = np.full((120, 68), 0.01)
    lab = truth.copy()
    lab[5, [10, 20, 30]] += 8 * sigma[5, 0]
    fold_of = write_oof_folds(tmp_path, pred, spread)
    table = SimpleNamespace(files=[f"img{i:03d}.jpg" for i in range(120)], points=lab.astype(np.float32),
                            lines=np.arange(2, 122))
    assert A._sigma_paths(str(tmp_path), 2) is None
    np.save(tmp_path / "fold0" / A.OOF_SIGMA, sigma[fold_of == 0].astype(np.float32))
    assert A._sigma_paths(str(tmp_path), 2) is None           # one fold only: not used
    assert not A._fit_scorer(str(tmp_path), fold_of, 2, table, ak.IBUG68).with_sigma
    np.save(tmp_path / "fold1" / A.OOF_SIGMA, sigma[fold_of == 1].astype(np.float32))
    assert A._fit_scorer(str(tmp_path), fold_of, 2, table, ak.IBUG68).with_sigma
    texts = []
    for chunk in (7, 10_000):
        monkeypatch.setattr(A, "SCORE_CHUNK", chunk)
        counts, n, top = A._score_all(str(tmp_path), fold_of, 2, table, ak.IBUG68, DEFAULT_THRESHOLD)
        texts.append((tmp_path / "audit.csv").read_text(encoding="utf-8"))
        assert n == 120 and top[0]["file_name"] == "img005.jpg"
    assert texts[0] == texts[1]
