"""Issue 8, training cases, table-driven: every case ends in a clear error (exit != 0, message
keywords, earlier outputs byte-identical, no half-made run folder), a counted skip, or correct
handling (the run completes)."""

import errno
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import augkit.run_folder as run_folder
from augkit.files import atomic_open
from augkit.models.checkpoint import read_checkpoint, save_checkpoint
from augkit.cli.train import train as train_cmd
from augkit.models.network import TinyNet

FAST = ["--backbone", "tiny", "--size", "32", "--batch-size", "8", "--workers", "0", "--quiet", "--threads", "1"]
DEMO = ["--demo-train", "32", "--demo-val", "8"]


def _train(*args):
    return CliRunner().invoke(train_cmd, [*FAST, *args])


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _no_tmp(folder: Path):
    left = [p.name for p in folder.iterdir() if p.name.endswith(".tmp") or ".repair" in p.name]
    assert not left, left


def _competition(root: Path, n=20, corrupt=()):
    """A competition-layout folder of synthetic faces; names in ``corrupt`` are truncated JPEGs whose
    header still reads (so ``--verify header`` lets them through)."""
    from augkit.data.synthetic import make_face
    (root / "images").mkdir(parents=True)
    rows = ["\t".join(["file_name"] + [f"Point_{i}_{a}" for i in range(68) for a in "XY"])]
    for i in range(n):
        img, pts = make_face(np.random.default_rng(i))
        name = f"face_{i}.jpg"
        ok, buf = cv2.imencode(".jpg", img[..., ::-1])
        data = buf.tobytes()
        (root / "images" / name).write_bytes(data[:len(data) // 3] if name in corrupt else data)
        rows.append(name + "\t" + "\t".join(f"{v:.2f}" for v in pts.reshape(-1)))
    (root / "landmarks.csv").write_text("\n".join(rows) + "\n")
    return root


# ------------------------------------------------------------------ 8.2: a crash between checkpoint writes

def _failing_nth_write(monkeypatch, n):
    calls = {"n": 0}
    real = run_folder.atomic_write_bytes   # the run folder writes the checkpoints' bytes with it

    def save(path, data):
        calls["n"] += 1
        if calls["n"] == n:  # a full disk in the middle of the write
            with atomic_open(path, "wb") as f:
                f.write(b"partial")
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)
    monkeypatch.setattr(run_folder, "atomic_write_bytes", save)


@pytest.mark.parametrize("case,fail_at", [("8.2 best.pt of epoch 1 written, last.pt fails", 2),
                                          ("8.2 epoch 2's first write fails", 3)])
def test_8_2_crash_between_checkpoint_writes_then_resume_has_both(tmp_path, monkeypatch, case, fail_at):
    out = tmp_path / "run"
    _failing_nth_write(monkeypatch, fail_at)
    r = _train(*DEMO, "--epochs", "2", "--out", str(out))
    assert r.exit_code != 0 and "no space left" in r.output and "cannot write" in r.output, case
    monkeypatch.undo()
    _no_tmp(out)
    r = _train("--resume", str(out))
    assert r.exit_code == 0, r.output
    last, best = read_checkpoint(out / "last.pt"), read_checkpoint(out / "best.pt")
    assert last["epoch"] == 2 and best["epoch"] == last["best"]["epoch"]
    _no_tmp(out)


def test_8_2_resume_writes_a_missing_best_pt_from_last_pt(tmp_path):
    # an older run that crashed after last.pt and before best.pt (the old write order)
    out = tmp_path / "run"
    assert _train(*DEMO, "--epochs", "1", "--out", str(out)).exit_code == 0
    (out / "best.pt").unlink()
    r = _train("--resume", str(out), "--epochs", "2")
    assert r.exit_code == 0, r.output
    assert (out / "best.pt").is_file() and read_checkpoint(out / "last.pt")["epoch"] == 2
    _no_tmp(out)


# ------------------------------------------------------------------ 8.4: a corrupt JPEG with --verify header

def test_8_4_corrupt_jpeg_with_verify_header_is_a_counted_skip_also_on_resume(tmp_path):
    data = _competition(tmp_path / "data", corrupt={"face_3.jpg", "face_11.jpg"})
    out = tmp_path / "run"
    r = _train("--data", str(data), "--verify", "header", "--val-fraction", "0.3", "--epochs", "1",
               "--out", str(out))
    assert r.exit_code == 0, r.output
    skipped = (out / "skipped.csv").read_text()
    assert "face_3.jpg" in skipped and "face_11.jpg" in skipped and "could not be decoded" in skipped
    assert np.isfinite(read_checkpoint(out / "last.pt")["history"][0]["mse"])
    r = _train("--resume", str(out), "--epochs", "2")
    assert r.exit_code == 0, r.output
    skipped = (out / "skipped.csv").read_text().splitlines()
    assert len(skipped) == 3 and read_checkpoint(out / "last.pt")["epoch"] == 2  # header + 2, not doubled
    r = _train("--data", str(data), "--verify", "header", "--strict", "--out", str(tmp_path / "strict"))
    assert r.exit_code != 0 and "face_" in r.output and "decodable" in r.output


# ------------------------------------------------------------------ clear errors, no half-made run folder

def _five_point_checkpoint(path: Path) -> Path:
    save_checkpoint(path, {"model": TinyNet(10).state_dict(),
                           "model_info": {"backbone": "tiny", "n_points": 5, "input_size": [32, 32]}})
    return path


ERROR_CASES = [
    # case id, setup -> extra args, expected message keywords
    ("8.9 --weights of a 5-point checkpoint", lambda t: ["--weights", str(_five_point_checkpoint(t / "five.pt"))],
     ["five.pt", "5 points", "68"]),
    ("8.12 missing --data", lambda t: ["--data", str(t / "nope")], ["nope", "no such file"]),
    ("8.12 unknown backbone", lambda t: ["--backbone", "resnet_fifty"], ["unknown backbone", "resnet_fifty"]),
    ("8.12 --scheme with another point count", lambda t: ["--scheme", str(_scheme5(t))], ["--scheme", "5 points",
                                                                                          "68"]),
]


def _scheme5(t: Path) -> Path:
    p = t / "five.yaml"
    p.write_text("name: five\nn_points: 5\nflip_pairs: [[0, 1]]\n")
    return p


@pytest.mark.parametrize("case,setup,words", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_clear_error_and_no_run_folder_left(tmp_path, case, setup, words):
    out = tmp_path / "run"
    r = _train(*DEMO, "--epochs", "1", *setup(tmp_path), "--out", str(out))
    assert r.exit_code != 0, case
    assert "Traceback" not in r.output and all(w in r.output for w in words), r.output
    assert not out.exists(), f"{case}: a failed train left {sorted(p.name for p in out.iterdir())}"


RESUME_CONFLICTS = [("--lr", "0.05"), ("--size", "48"), ("--backbone", "resnet18"), ("--optimizer", "sgd"),
                    ("--data", "/somewhere/else")]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cat") / "run"
    r = CliRunner().invoke(train_cmd, [*FAST, *DEMO, "--epochs", "1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.parametrize("option,value", RESUME_CONFLICTS)
def test_8_12_resume_refuses_options_that_contradict_the_run(finished_run, option, value):
    before = _snapshot(finished_run)
    r = _train("--resume", str(finished_run), option, value, "--epochs", "2")
    assert r.exit_code != 0
    for word in (option, value, "--weights", str(finished_run / "last.pt"), "learning rate or optimiser"):
        assert word in r.output, (word, r.output)
    assert _snapshot(finished_run) == before  # nothing written over
