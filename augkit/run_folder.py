"""The run folder of ``augkit train``: every file a run leaves behind, read and written in one place.

One :class:`RunFolder` knows each file's name (the ``*_NAME`` constants and the path properties),
reads and writes the JSON and text files atomically, holds the one best/last rule
(:meth:`RunFolder.checkpoint` for a consumer of a run, :meth:`RunFolder.resume_checkpoint` for
``--resume``) and protects the folder:

- :meth:`RunFolder.refuse_existing`: a new training never writes over a run;
- :meth:`RunFolder.acquire_lock` / :meth:`RunFolder.release_lock`: one writer at a time (``.lock``
  holds pid, host and start time; a lock whose process is gone is recognised and taken over);
- :func:`input_fingerprint` / :meth:`RunFolder.input_changes`: ``--resume`` refuses when the label
  file or the image list changed since the run started.

Torch-free: the checkpoints' bytes are made by :mod:`augkit.models.checkpoint` and written here.
``--run DIR`` for ``augkit predict``, ``evaluate`` and ``tta fit`` is resolved here too: the run's checkpoint (its one rule: ``best.pt``, else ``last.pt``), its fitted
TTA spec (``tta.yaml``) and, from ``split.json``, its own validation images (``val.csv``).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import os
import socket
import sys
import time

import numpy as np

from augkit.errors import InputError
from augkit.models import CHECKPOINT_NAMES
from augkit.files import atomic_open, atomic_write_bytes, atomic_write_text, parse_json, read_json, write_figure

__all__ = ["LOG_COLUMNS", "InputsChanged", "RunExists", "RunFolder", "RunFolderError", "RunLocked", "default_run_dir",
           "demo_run_reason", "fingerprint_changes", "input_fingerprint", "plot_curves", "run_checkpoint", "run_spec",
           "validation_labels"]

LOG_COLUMNS = ["epoch", "train_loss", "val_loss", "mse", "nme", "fr", "base_mse", "base_nme", "base_fr", "lr",
               "train_img_s", "epoch_s", "elapsed_s"]


class RunFolderError(InputError):
    """A run folder refuses what was asked (the message is one line saying what to do instead)."""


class RunExists(RunFolderError):
    """``train --out DIR`` where DIR already holds a run."""


class RunLocked(RunFolderError):
    """Another live process is writing the run folder."""


class InputsChanged(RunFolderError):
    """``--resume`` of a run whose labels or image list changed since it started."""


def _file_property(name: str, doc: str) -> property:
    return property(lambda self: self.file(name), doc=f"``{name}``: {doc}")


def default_run_dir(data: str | None) -> str:
    """``runs/<time>-<data folder name>`` (``demo`` for the synthetic faces), not yet existing."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = "demo" if data is None else os.path.basename(os.path.normpath(data)) or "data"
    base = os.path.join("runs", f"{stamp}-{name}")
    path, i = base, 1
    while os.path.exists(path):
        i += 1
        path = f"{base}-{i}"
    return path


class RunFolder:
    """Paths, readers and writers of one run folder (under DDP only rank 0 calls the writers)."""

    CONFIG_NAME = "config.json"
    SPLIT_NAME = "split.json"
    SKIPPED_NAME = "skipped.csv"
    LOG_CSV_NAME = "log.csv"
    LOG_JSONL_NAME = "log.jsonl"
    CURVES_NAME = "curves.png"
    BEST_NAME, LAST_NAME = CHECKPOINT_NAMES
    SUMMARY_NAME = "summary.json"
    TTA_NAME = "tta.yaml"
    VAL_NAME = "val.csv"
    LR_FIND_JSON_NAME = "lr_find.json"
    LR_FIND_PNG_NAME = "lr_find.png"
    FINGERPRINT_NAME = "fingerprint.json"
    LOCK_NAME = ".lock"
    RUN_MARKERS = (CONFIG_NAME, LAST_NAME, BEST_NAME)   # any of these: the folder holds a run

    config_json = _file_property(CONFIG_NAME, "the run's options")
    split_json = _file_property(SPLIT_NAME, "which images trained and which validated, and how")
    skipped_csv = _file_property(SKIPPED_NAME, "rows and images left out, with the reason")
    log_csv = _file_property(LOG_CSV_NAME, "one row per epoch")
    log_jsonl = _file_property(LOG_JSONL_NAME, "one JSON object per epoch")
    curves_png = _file_property(CURVES_NAME, "losses and NME against the mean-shape baseline")
    best_pt = _file_property(BEST_NAME, "the state of the best validation epoch")
    last_pt = _file_property(LAST_NAME, "the latest state (what --resume continues)")
    summary_json = _file_property(SUMMARY_NAME, "written when training ends")
    tta_yaml = _file_property(TTA_NAME, "the TTA spec fitted by `augkit tta fit --run`")
    val_csv = _file_property(VAL_NAME, "the validation images with their landmarks, for TTA")
    lr_find_json = _file_property(LR_FIND_JSON_NAME, "the LR range test's result")
    lr_find_png = _file_property(LR_FIND_PNG_NAME, "the LR range test's plot")
    fingerprint_json = _file_property(FINGERPRINT_NAME, "the inputs the run started with")
    lock_file = _file_property(LOCK_NAME, "pid, host and start time of the process writing the run")

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self._made: list[str] = []   # folders made by acquire_lock, removed again if left empty

    def __repr__(self) -> str:
        return f"RunFolder({self.path!r})"

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def has(self, name: str) -> bool:
        return os.path.isfile(self.file(name))

    # ------------------------------------------------------------------ reading and writing

    def write_text(self, name: str, text: str) -> None:
        """Atomic write (temp file + fsync + rename); makes the folder on the first write."""
        atomic_write_text(self.file(name), text)

    def write_json(self, name: str, obj) -> None:
        self.write_text(name, json.dumps(obj, indent=1) + "\n")

    def read_json(self, name: str):
        """A JSON file of the run; a missing or broken file is one line naming it."""
        path = self.file(name)
        try:
            return read_json(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such file (a run folder written by `augkit train`)") from None
        except (OSError, ValueError) as e:
            raise RunFolderError(f"{path}: not readable as JSON ({e})") from None

    def read_config(self) -> dict:
        return self.read_json(self.CONFIG_NAME)

    def read_split(self) -> dict:
        """``split.json``: a mapping with ``train`` and ``val`` (relative image names) and ``data``
        (None for the synthetic demo; then ``root`` is absent)."""
        split = self.read_json(self.SPLIT_NAME)
        if not isinstance(split, dict) or not {"train", "val", "data"} <= set(split):
            raise RunFolderError(f"{self.split_json}: not a split file of `augkit train` (expected a mapping with "
                                 "'data', 'train' and 'val')")
        return split

    def write_skipped(self, skipped: list) -> None:
        """``skipped.csv``: file, row, reason of each row or image left out."""
        from augkit.data.table import LandmarkTable
        LandmarkTable(np.array([], dtype=str), np.zeros((0, 0, 2), np.float32), skipped).write_skipped(self.skipped_csv)

    def write_logs(self, history: list) -> None:
        """``log.csv`` (the :data:`LOG_COLUMNS`) and ``log.jsonl`` (every key) from the epoch rows."""
        lines = [",".join(LOG_COLUMNS)]
        for h in history:
            lines.append(",".join(_cell(h.get(c)) for c in LOG_COLUMNS))
        self.write_text(self.LOG_CSV_NAME, "\n".join(lines) + "\n")
        self.write_text(self.LOG_JSONL_NAME, "".join(json.dumps(h) + "\n" for h in history))

    # ------------------------------------------------------------------ the one best/last rule

    def checkpoint(self) -> str | None:
        """The checkpoint a consumer of the run uses (predict, evaluate, tta fit): ``best.pt``, else
        ``last.pt`` (a run without validation); None when neither exists."""
        return self._first(self.BEST_NAME, self.LAST_NAME)

    def resume_checkpoint(self) -> str | None:
        """The checkpoint ``--resume`` continues: ``last.pt``, else ``best.pt`` (a crash between
        best.pt and the first last.pt leaves the same state in best.pt); None when neither exists."""
        return self._first(self.LAST_NAME, self.BEST_NAME)

    def _first(self, *names: str) -> str | None:
        return next((self.file(n) for n in names if self.has(n)), None)

    # ------------------------------------------------------------------ protections

    def run_files(self) -> list[str]:
        """The files present that mark a run (``config.json``, ``last.pt``, ``best.pt``)."""
        return [n for n in self.RUN_MARKERS if self.has(n)]

    def refuse_existing(self) -> None:
        """Raise :class:`RunExists` when the folder already holds a run (a new training would write
        over its checkpoints); the message names ``--resume`` and a free folder."""
        found = self.run_files()
        if found:
            raise RunExists(f"--out {self.path}: this folder already holds a run of `augkit train` "
                            f"({', '.join(found)}); continue it with `augkit train --resume {self.path}`, "
                            f"or start a new run with a new folder, e.g. --out {_free_name(self.path)}")

    def acquire_lock(self, note=None) -> None:
        """Take ``.lock`` (``O_CREAT | O_EXCL``: atomic) holding this process's pid, host and start time.

        A lock of a live process (or of another host, which cannot be checked) raises
        :class:`RunLocked` naming its pid; a lock of a process no longer running on this host is
        reported with ``note(line)`` and taken over. Makes the folder when needed
        (:meth:`release_lock` removes it again if nothing else was written).
        """
        self._make_folder()
        mine = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        for _ in range(3):
            if self._create_lock(mine):
                return
            held, text = self._read_lock()
            if held is None:    # released between our create and read: try again
                continue
            if _alive(held):
                raise RunLocked(f"{self.path}: {_describe(held)} is writing this run folder (its lock is "
                                f"{self.lock_file}); wait for it to finish, or train into another --out folder")
            if self._take_over(text) and note is not None:
                note(f"note: {self.lock_file}: {_describe(held)} is no longer running; took over its stale lock")
        raise RunLocked(f"{self.path}: could not take {self.lock_file}: other processes keep taking it")

    def release_lock(self) -> None:
        """Remove ``.lock`` if this process holds it; remove the folders :meth:`acquire_lock` made
        if they are still empty (a run that failed before its first file leaves nothing)."""
        held, _ = self._read_lock()
        if held is not None and held.get("pid") == os.getpid() and held.get("host") == socket.gethostname():
            _unlink(self.lock_file)
        for folder in reversed(self._made):
            try:
                os.rmdir(folder)
            except OSError:
                break
        self._made = []

    def _make_folder(self) -> None:
        missing, p = [], self.path
        while not os.path.isdir(p) and os.path.dirname(p) != p:
            missing.append(p)
            p = os.path.dirname(p)
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as e:
            raise RunFolderError(f"cannot make the run folder {self.path}: {e.strerror or e}") from None
        self._made = list(reversed(missing))

    def _create_lock(self, mine: dict) -> bool:
        try:
            fd = os.open(self.lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError as e:
            raise RunFolderError(f"cannot write {self.lock_file}: {e.strerror or e}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(mine) + "\n")
        return True

    def _read_lock(self) -> tuple[dict | None, str]:
        """(the lock's content, its text); (None, "") when there is no lock. An unreadable lock
        (a writer killed mid-write) reads as pid 0: dead."""
        try:
            with open(self.lock_file, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return None, ""
        try:
            held = parse_json(text, self.lock_file)
        except ValueError:
            held = None
        if not isinstance(held, dict):
            held = {"pid": 0, "host": socket.gethostname(), "started": "?"}
        return held, text

    def _take_over(self, stale_text: str) -> bool:
        """Move the stale lock aside (one rename: only one process wins it), check it is the one
        judged stale, and delete it. False when another process got there first."""
        aside = f"{self.lock_file}.stale.{os.getpid()}"
        try:
            os.rename(self.lock_file, aside)
        except FileNotFoundError:
            return False
        with open(aside, encoding="utf-8") as f:
            moved = f.read()
        if moved != stale_text:   # a fresh lock of a process that took over first: put it back
            with contextlib.suppress(OSError):
                os.link(aside, self.lock_file)
            _unlink(aside)
            return False
        _unlink(aside)
        return True

    # ------------------------------------------------------------------ input fingerprint

    def write_fingerprint(self, fingerprint: dict) -> None:
        self.write_json(self.FINGERPRINT_NAME, fingerprint)

    def read_fingerprint(self) -> dict | None:
        """The recorded fingerprint, or None for a run that recorded none (older versions)."""
        return self.read_json(self.FINGERPRINT_NAME) if self.has(self.FINGERPRINT_NAME) else None

    def input_changes(self, current: dict) -> list[str] | None:
        """What changed between the recorded fingerprint and ``current`` (empty: nothing); None when
        the run recorded no fingerprint."""
        recorded = self.read_fingerprint()
        return None if recorded is None else fingerprint_changes(recorded, current)

    # the checkpoints (bytes made by augkit.models.checkpoint.checkpoint_bytes) and the curves

    def save_state(self, checkpoint: bytes, improved: bool) -> None:
        """``best.pt`` (when ``improved``) BEFORE ``last.pt``: a crash between the two leaves a
        ``last.pt`` of the epoch before, which ``--resume`` redoes, writing both again."""
        if improved:
            atomic_write_bytes(self.best_pt, checkpoint)
        atomic_write_bytes(self.last_pt, checkpoint)

    def save_last(self, checkpoint: bytes) -> None:
        atomic_write_bytes(self.last_pt, checkpoint)

    def repair_best(self, checkpoint: dict) -> bool:
        """Write a missing ``best.pt`` when ``last.pt`` (``checkpoint``) is itself the best epoch's
        state (an older run's crash between the two writes). True when it wrote one."""
        best = checkpoint.get("best")
        if self.has(self.BEST_NAME) or not best:
            return False
        if checkpoint.get("step_in_epoch", 0) or best.get("epoch") != checkpoint.get("epoch"):
            return False
        with open(self.last_pt, "rb") as f:
            atomic_write_bytes(self.best_pt, f.read())
        return True

    def plot(self, history: list, log) -> None:
        try:
            plot_curves(self.path, history)
        except Exception as e:  # noqa: BLE001 - a plot must never kill a run
            log(f"could not draw {self.CURVES_NAME}: {e}")



def _cell(v) -> str:
    if v is None:
        return ""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _free_name(path: str) -> str:
    i = 2
    while os.path.exists(f"{path}-{i}"):
        i += 1
    return f"{path}-{i}"


def _alive(held: dict) -> bool:
    """True unless the lock's process is known to be gone (same host, no such pid)."""
    if held.get("host") != socket.gethostname():
        return True
    try:
        pid = int(held.get("pid", 0))
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # a live process of another user
        return True
    except OSError as e:
        return e.errno != errno.ESRCH
    return True


def _describe(held: dict) -> str:
    return f"pid {held.get('pid')} on host {held.get('host')} (started {held.get('started')})"


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _sha1_file(path: str) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def input_fingerprint(labels: str | None, images, points=None) -> dict:
    """What a run trains on, cheap enough at 400k images: the label file's size, mtime and SHA-1
    of its content (for a folder of label files, e.g. ``pts``: the SHA-1 of the parsed ``points``
    array), and the count and SHA-1 of the sorted image names (names, not image bytes).

    Args:
        labels: the label file (or folder); None for the synthetic demo.
        images: the image names the run uses (train and validation, relative to the data root).
        points: the parsed landmarks, hashed when ``labels`` is a folder.
    """
    names = sorted(str(n) for n in images)
    fp: dict = {"labels": None, "images": {"count": len(names),
                                           "sha1": hashlib.sha1("\n".join(names).encode("utf-8")).hexdigest()}}
    if labels is not None:
        path = os.path.abspath(os.fspath(labels))
        entry: dict = {"path": path}
        if os.path.isfile(path):
            st = os.stat(path)
            entry.update(size=st.st_size, mtime=st.st_mtime, sha1=_sha1_file(path))
        elif points is not None:
            entry["points_sha1"] = hashlib.sha1(np.ascontiguousarray(points, np.float32).tobytes()).hexdigest()
        fp["labels"] = entry
    return fp


def fingerprint_changes(recorded: dict, current: dict) -> list[str]:
    """One phrase per input that differs (empty when the run's inputs are the same)."""
    out = []
    was, now = recorded.get("labels") or {}, current.get("labels") or {}
    if was.get("path") != now.get("path"):
        out.append(f"the labels are {now.get('path')}, the run started on {was.get('path')}")
    elif was.get("sha1") != now.get("sha1") or was.get("points_sha1") != now.get("points_sha1"):
        what = f"the label file {now.get('path')} changed"
        if "size" in was and "size" in now:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now["mtime"]))
            what += f" ({was['size']} -> {now['size']} bytes, modified {when})"
        out.append(what)
    a, b = recorded.get("images") or {}, current.get("images") or {}
    if a.get("sha1") != b.get("sha1"):
        out.append(f"the image list changed ({a.get('count')} -> {b.get('count')} images)")
    return out


def plot_curves(run_dir: str, history: list) -> str | None:
    """``curves.png``: losses, and validation NME against the mean-shape baseline."""
    if not history:
        return None
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    if any(h.get("val_loss") is not None for h in history):
        ax[0].plot(epochs, [h.get("val_loss") for h in history], "o-", label="val loss")
    losses = [h[k] for h in history for k in ("train_loss", "val_loss") if h.get(k) is not None]
    if losses and min(losses) > 0:   # a likelihood loss (the rle head's) can be negative: linear axis then
        ax[0].set_yscale("log")
    ax[0].set_xlabel("epoch")
    ax[0].legend()
    if any(h.get("nme") is not None for h in history):
        ax[1].plot(epochs, [h.get("nme") for h in history], "o-", label="val NME")
        ax[1].plot(epochs, [h.get("base_nme") for h in history], "--", label="mean-shape baseline")
        ax[1].set_xlabel("epoch")
        ax[1].set_ylabel("NME")
        ax[1].legend()
    path = os.path.join(run_dir, RunFolder.CURVES_NAME)
    write_figure(fig, path, dpi=80)
    return path



# ------------------------------------------------------------- --run DIR: a run folder as the hand-off


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _folder(run: str) -> RunFolder:
    folder = RunFolder(run)
    if not os.path.isdir(folder.path):
        raise RunFolderError(f"--run {folder.path}: no such folder (a run folder written by `augkit train`)")
    return folder


def run_checkpoint(run: str, warn=None) -> str:
    """The run's checkpoint for inference (:meth:`RunFolder.checkpoint`: ``best.pt``, else ``last.pt``).
    Without ``best.pt`` a line to ``warn`` (default: stderr) says that ``last.pt`` is used, and why
    there is no best."""
    folder = _folder(run)
    path = folder.checkpoint()
    if path is None:
        raise RunFolderError(f"--run {folder.path}: no {folder.BEST_NAME} nor {folder.LAST_NAME} there "
                                   "(did `augkit train` finish an epoch?)")
    if path == folder.last_pt:
        (warn or _stderr)(f"--run {folder.path}: using {folder.LAST_NAME}: {_why_no_best(folder)}")
    return path


def _why_no_best(folder: RunFolder) -> str:
    try:
        validates = float(folder.read_config().get("val_fraction", 0.1) or 0) > 0
    except (OSError, ValueError, RunFolderError, AttributeError):
        validates = True
    if not validates:
        return "the run holds out no validation images (--val-fraction 0), so its last state is its model"
    return (f"no epoch has been validated yet, so there is no {folder.BEST_NAME}: {folder.LAST_NAME} is the latest "
            "training state, not a validated best (the run was stopped before its first validation, or is still "
            "in it); `augkit train --resume` it to finish")


def run_spec(run: str) -> str | None:
    """``DIR/tta.yaml`` when the run has a fitted TTA spec."""
    folder = _folder(run)
    return folder.tta_yaml if folder.has(folder.TTA_NAME) else None


def validation_labels(run: str) -> str:
    """The run's validation images with their landmarks as a CSV (``DIR/val.csv``: absolute image
    paths, then x0, y0, x1, y1, ...), written row by row from ``split.json`` and the run's dataset."""
    folder = _folder(run)
    run = folder.path
    split = _read_split(folder)
    from augkit.data import DatasetError, read_dataset
    try:
        table = read_dataset(split["data"], format=split.get("format"))
    except (DatasetError, OSError, ValueError) as e:
        raise RunFolderError(f"--run {run}: the run's data cannot be read any more: {e}") from None
    wanted = set(split["val"])
    rows = [i for i, f in enumerate(table.files) if os.path.relpath(f, split["root"]) in wanted]
    if not rows:
        raise RunFolderError(f"--run {run}: none of the {len(wanted)} validation images of "
                                   f"{folder.SPLIT_NAME} are in {split['data']} any more")
    path = folder.val_csv
    with atomic_open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file"] + [f"{a}{i}" for i in range(table.n_points) for a in "xy"])
        for i in rows:
            w.writerow([table.files[i]] + [f"{v:.4f}" for v in table.points[i].reshape(-1).tolist()])
    return path


def _read_split(folder: RunFolder) -> dict:
    run = folder.path
    if not folder.has(folder.SPLIT_NAME):
        raise RunFolderError(f"--run {run}: no {folder.SPLIT_NAME} (written by `augkit train` from this "
                             "version on)")
    split = folder.read_split()
    if split.get("data") is None:
        raise RunFolderError(f"--run {run}: the run trained on the synthetic demo faces; pass --data with "
                             "labelled validation images instead")
    if not split.get("val"):
        raise RunFolderError(f"--run {run}: the run held out no validation images (--val-fraction 0)")
    if "root" not in split:
        raise RunFolderError(f"{folder.split_json}: not a split file of `augkit train` (no 'root': the "
                             "folder the image names are relative to)")
    return split


def demo_run_reason(run) -> str | None:
    """Why ``tta fit --run`` cannot use the run's own validation images, when the run trained on the
    synthetic demo faces (``augkit train`` without ``--data``: no image files); else None."""
    path = RunFolder(run).split_json
    try:
        split = read_json(path)
    except (OSError, ValueError):
        return None
    if isinstance(split, dict) and "data" in split and split["data"] is None:
        return (f"--run {os.fspath(run)}: this run trained on the synthetic demo faces (`augkit train` without "
                "--data), which are generated in memory: there are no validation image files to fit on; give --data "
                "with labelled validation images (not the test set), or fit a run trained with --data")
    return None
