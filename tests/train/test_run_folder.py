"""The run folder protects itself: one typed RunFolder (names, atomic JSON, one best/last rule), a
finished run is never overwritten, one writer at a time (a lock; a stale one is taken over), and
--resume refuses when the labels or the image list changed. Tiny trainings, or RunFolder alone."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from augkit.run_folder import (
    InputsChanged,
    RunExists,
    RunFolder,
    RunFolderError,
    RunLocked,
    fingerprint_changes,
    input_fingerprint,
)

FAST = ["--backbone", "tiny", "--size", "32", "--batch-size", "8", "--workers", "0", "--quiet", "--threads", "1"]
DEMO = ["--demo-train", "16", "--demo-val", "8", "--epochs", "1"]


def _train(*args):
    from augkit.cli.train import train
    return CliRunner().invoke(train, [*FAST, *(str(a) for a in args)])


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _write_lock(folder: Path, pid: int, host: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".lock").write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                              "started": "2026-01-01T00:00:00"}))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rf") / "run"
    r = _train(*DEMO, "--out", out)
    assert r.exit_code == 0, r.output
    return out


# ------------------------------------------------------------------ the typed folder

def test_every_file_has_a_name_and_a_path_inside_the_folder(tmp_path):
    f = RunFolder(tmp_path / "r")
    names = {f.CONFIG_NAME, f.SPLIT_NAME, f.SKIPPED_NAME, f.LOG_CSV_NAME, f.LOG_JSONL_NAME, f.CURVES_NAME,
             f.BEST_NAME, f.LAST_NAME, f.SUMMARY_NAME, f.TTA_NAME, f.VAL_NAME, f.LR_FIND_JSON_NAME,
             f.LR_FIND_PNG_NAME, f.FINGERPRINT_NAME, f.LOCK_NAME}
    assert len(names) == 15
    paths = [f.config_json, f.split_json, f.skipped_csv, f.log_csv, f.log_jsonl, f.curves_png, f.best_pt, f.last_pt,
             f.summary_json, f.tta_yaml, f.val_csv, f.lr_find_json, f.lr_find_png, f.fingerprint_json, f.lock_file]
    assert {os.path.basename(p) for p in paths} == names
    assert all(os.path.dirname(p) == str(tmp_path / "r") for p in paths)


def test_one_best_last_rule_for_consumers_and_for_resume(tmp_path):
    f = RunFolder(tmp_path)
    assert f.checkpoint() is None and f.resume_checkpoint() is None
    Path(f.last_pt).write_bytes(b"x")
    assert f.checkpoint() == f.last_pt and f.resume_checkpoint() == f.last_pt
    Path(f.best_pt).write_bytes(b"x")
    assert f.checkpoint() == f.best_pt          # predict / evaluate / tta fit: the best epoch
    assert f.resume_checkpoint() == f.last_pt   # --resume: where training stopped
    os.remove(f.last_pt)
    assert f.resume_checkpoint() == f.best_pt   # a crash between best.pt and the first last.pt


def test_json_round_trip_is_atomic_and_bad_files_name_themselves(tmp_path):
    f = RunFolder(tmp_path / "new" / "run")
    f.write_json(f.SUMMARY_NAME, {"epochs": 2})    # makes the folder on the first write
    assert f.read_json(f.SUMMARY_NAME) == {"epochs": 2}
    assert not [p for p in os.listdir(f.path) if p.endswith(".tmp")]
    Path(f.split_json).write_text("{not json")
    with pytest.raises(RunFolderError, match="split.json: not readable as JSON"):
        f.read_split()
    Path(f.split_json).write_text(json.dumps({"train": []}))
    with pytest.raises(RunFolderError, match="split.json: not a split file.*'data', 'train' and 'val'"):
        f.read_split()
    with pytest.raises(FileNotFoundError, match="config.json: no such file"):
        f.read_config()


def test_write_logs_writes_the_columns_and_every_key(tmp_path):
    f = RunFolder(tmp_path)
    f.write_logs([{"epoch": 1, "train_loss": 0.5, "mse": None, "extra": 3}])
    lines = Path(f.log_csv).read_text().splitlines()
    assert lines[0].startswith("epoch,train_loss,val_loss,mse") and lines[1].startswith("1,0.5,,,")
    assert json.loads(Path(f.log_jsonl).read_text()) == {"epoch": 1, "train_loss": 0.5, "mse": None, "extra": 3}


def test_tta_run_checkpoint_follows_the_rule(tmp_path):
    from augkit.run_folder import run_checkpoint, run_spec
    f = RunFolder(tmp_path)
    Path(f.last_pt).write_bytes(b"x")
    Path(f.best_pt).write_bytes(b"x")
    assert run_checkpoint(tmp_path) == f.best_pt and run_spec(tmp_path) is None
    Path(f.tta_yaml).write_text("name: x\n")
    assert run_spec(tmp_path) == f.tta_yaml


def test_the_run_folder_module_loads_no_torch():
    code = "import sys, augkit.run_folder; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ------------------------------------------------------------------ a finished run is never overwritten

def test_refuse_existing_names_resume_and_a_new_folder(tmp_path):
    f = RunFolder(tmp_path / "run")
    f.refuse_existing()                      # no folder: fine
    os.makedirs(f.path)
    Path(f.lr_find_json).write_text("{}")
    f.refuse_existing()                      # an LR range test is not a run
    Path(f.config_json).write_text("{}")
    with pytest.raises(RunExists) as e:
        f.refuse_existing()
    msg = str(e.value)
    assert f"--resume {f.path}" in msg and f"--out {f.path}-2" in msg and "config.json" in msg
    assert "\n" not in msg


def test_train_out_on_a_finished_run_is_refused_before_anything_is_written(finished_run):
    before = _snapshot(finished_run)
    r = _train(*DEMO, "--out", finished_run)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"--resume {finished_run}" in r.output and "new folder" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1
    assert _snapshot(finished_run) == before
    assert not (finished_run / ".lock").exists()


# ------------------------------------------------------------------ one writer at a time

def test_lock_is_exclusive_and_released(tmp_path):
    a, b = RunFolder(tmp_path / "made" / "run"), RunFolder(tmp_path / "made" / "run")
    a.acquire_lock()
    held = json.loads(Path(a.lock_file).read_text())
    assert held["pid"] == os.getpid() and held["host"] == socket.gethostname() and held["started"]
    with pytest.raises(RunLocked, match=f"pid {os.getpid()} on host"):
        b.acquire_lock()
    assert json.loads(Path(a.lock_file).read_text()) == held   # the loser left the lock alone
    a.release_lock()
    assert not (tmp_path / "made").exists()   # the folders the lock made, empty again, are gone
    b.acquire_lock()
    Path(b.config_json).write_text("{}")
    b.release_lock()
    assert sorted(os.listdir(b.path)) == ["config.json"]


def test_a_stale_lock_is_reported_and_taken_over(tmp_path):
    f = RunFolder(tmp_path)
    dead = _dead_pid()
    _write_lock(tmp_path, dead)
    notes = []
    f.acquire_lock(note=notes.append)
    assert len(notes) == 1 and f"pid {dead}" in notes[0] and "stale" in notes[0]
    assert json.loads(Path(f.lock_file).read_text())["pid"] == os.getpid()
    f.release_lock()
    Path(f.lock_file).write_text("{half a lock")   # a writer killed while writing its lock
    f.acquire_lock(note=notes.append)
    assert len(notes) == 2
    f.release_lock()
    assert not os.path.exists(f.lock_file)


def test_a_lock_of_another_host_is_not_taken(tmp_path):
    _write_lock(tmp_path, _dead_pid(), host="elsewhere.example")
    with pytest.raises(RunLocked, match="on host elsewhere.example"):
        RunFolder(tmp_path).acquire_lock()


def test_a_second_writer_fails_at_once_naming_the_pid(tmp_path):
    out = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(out, holder.pid)
        r = _train(*DEMO, "--out", out)
        assert r.exit_code == 1 and f"pid {holder.pid}" in r.output and "another --out" in r.output, r.output
        assert sorted(p.name for p in out.iterdir()) == [".lock"]   # nothing written, the lock left alone
    finally:
        holder.kill()
        holder.wait()
    r = _train(*DEMO, "--out", out)   # its holder is gone now: a stale lock, taken over
    assert r.exit_code == 0, r.output
    assert f"pid {holder.pid}" in r.output and "stale lock" in r.output
    assert (out / "last.pt").is_file() and not (out / ".lock").exists()


def test_a_failed_training_leaves_no_lock_and_no_folder(tmp_path):
    out = tmp_path / "run"
    r = _train(*DEMO, "--backbone", "resnet_fifty", "--out", out)
    assert r.exit_code != 0 and "unknown backbone" in r.output
    assert not out.exists()


# ------------------------------------------------------------------ --resume checks the inputs

def test_fingerprint_changes_name_what_changed(tmp_path):
    labels = tmp_path / "landmarks.csv"
    labels.write_text("file,x0,y0\na.jpg,1,2\nb.jpg,3,4\n")
    fp = input_fingerprint(labels, ["b.jpg", "a.jpg"])
    assert fp["labels"]["size"] == labels.stat().st_size and len(fp["labels"]["sha1"]) == 40
    assert fp["images"]["count"] == 2
    assert fingerprint_changes(fp, input_fingerprint(labels, ["a.jpg", "b.jpg"])) == []   # order does not count
    os.utime(labels, (1, 1))
    assert fingerprint_changes(fp, input_fingerprint(labels, ["a.jpg", "b.jpg"])) == []   # a touch is no change
    labels.write_text("file,x0,y0\na.jpg,1,2\nb.jpg,3,5\n")
    changed = fingerprint_changes(fp, input_fingerprint(labels, ["a.jpg"]))
    assert len(changed) == 2 and "landmarks.csv changed" in changed[0] and "2 -> 1 images" in changed[1]
    pts = np.zeros((2, 3, 2), np.float32)
    folder_fp = input_fingerprint(tmp_path, ["a.jpg", "b.jpg"], pts)   # a folder of label files: the points
    assert fingerprint_changes(folder_fp, input_fingerprint(tmp_path, ["a.jpg", "b.jpg"], pts + 1))
    f = RunFolder(tmp_path / "run")
    assert f.input_changes(fp) is None
    f.write_fingerprint(fp)
    assert f.input_changes(fp) == []


def _faces(root: Path, n: int = 12) -> Path:
    from augkit.data.synthetic import make_face
    (root / "images").mkdir(parents=True)
    rows = ["\t".join(["file_name"] + [f"Point_{i}_{a}" for i in range(68) for a in "XY"])]
    for i in range(n):
        img, pts = make_face(np.random.default_rng(i))
        cv2.imwrite(str(root / "images" / f"face_{i}.jpg"), img[..., ::-1])
        rows.append(f"face_{i}.jpg\t" + "\t".join(f"{v:.2f}" for v in pts.reshape(-1)))
    (root / "landmarks.csv").write_text("\n".join(rows) + "\n")
    return root


def test_resume_refuses_edited_labels_and_says_how_to_start_from_the_weights(tmp_path):
    data = _faces(tmp_path / "data")
    out = tmp_path / "run"
    r = _train("--data", data, "--epochs", "1", "--val-fraction", "0.25", "--verify", "header", "--out", out)
    assert r.exit_code == 0, r.output
    recorded = json.loads((out / "fingerprint.json").read_text())
    assert recorded["images"]["count"] == 12 and recorded["labels"]["path"] == str(data / "landmarks.csv")
    labels = data / "landmarks.csv"
    rows = [line.split("\t") for line in labels.read_text().splitlines()]
    rows[1][1] = f"{float(rows[1][1]) + 1:.2f}"   # one point moved by a pixel
    labels.write_text("\n".join("\t".join(r_) for r_ in rows) + "\n")
    before = _snapshot(out)
    r = _train("--resume", out, "--epochs", "2")
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    for words in ("landmarks.csv changed", f"--weights {out / 'last.pt'}", f"--data {data}", "--out NEW_FOLDER"):
        assert words in r.output, (words, r.output)
    assert _snapshot(out) == before and not (out / ".lock").exists()


def test_resume_of_an_unchanged_run_goes_on(finished_run):
    r = _train("--resume", finished_run, "--epochs", "2")
    assert r.exit_code == 0, r.output
    assert json.loads((finished_run / "summary.json").read_text())["epochs"] == 2
    assert not (finished_run / ".lock").exists()


def test_inputs_changed_is_a_run_folder_refusal():
    from augkit.train.loop import ResumeConflict
    assert issubclass(InputsChanged, ResumeConflict) and issubclass(RunLocked, ResumeConflict)
    assert issubclass(RunExists, ValueError)


# ------------------------------------------------------------------ worse than the mean shape: a warning

def _finished(history, tmp_path):
    lines = []
    log = SimpleNamespace(always=lines.append)
    r = SimpleNamespace(state=SimpleNamespace(history=history, best=None), elapsed_before=0.0,
                        folder=RunFolder(tmp_path), data=SimpleNamespace(skipped=[], train=[1], val=[1]),
                        dist=SimpleNamespace(main=True), log=log)
    from augkit.train.loop import _finish
    _finish(r, None, SimpleNamespace(session_start=0.0))
    return lines


def test_a_model_worse_than_the_mean_shape_ends_with_one_warning(tmp_path):
    row = {"epoch": 3, "mse": 184.6, "base_mse": 143.2, "nme": 0.2, "base_nme": 0.1}
    lines = _finished([row], tmp_path)
    warnings = [ln for ln in lines if ln.startswith("WARNING")]
    assert len(warnings) == 1 and "184.60" in warnings[0] and "143.20" in warnings[0] and "mean-shape" in warnings[0]
    assert (tmp_path / "summary.json").is_file()
    better = dict(row, mse=100.0)
    assert not [ln for ln in _finished([row, better], tmp_path) if ln.startswith("WARNING")]


def test_tta_fit_run_on_the_demo_run_says_it_trained_on_the_demo(finished_run):
    from augkit.cli import main
    r = CliRunner().invoke(main, ["tta", "fit", "--run", str(finished_run), "--tta", "flip"])
    assert r.exit_code == 1 and "synthetic demo faces" in r.output and "--data" in r.output, r.output
    assert "not a split file" not in r.output
