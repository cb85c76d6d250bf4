"""Atomic writes: the usual file mode, the original kept on failure, errors that name the real file."""

import errno
import os
import stat
import tempfile

import pytest

from augkit.files import OutputError, atomic_open, atomic_write_text, check_writable


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_new_file_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.txt") == 0o644
    assert _mode(tmp_path / "b.txt") == 0o600


def test_existing_file_keeps_its_mode(tmp_path):
    p = tmp_path / "sub.csv"
    p.write_text("old")
    os.chmod(p, 0o664)
    atomic_write_text(p, "new")
    assert p.read_text() == "new" and _mode(p) == 0o664


def test_streaming_failure_keeps_original_and_leaves_no_temp(tmp_path):
    p = tmp_path / "sub.csv"
    p.write_text("good\n")
    with pytest.raises(RuntimeError):
        with atomic_open(p) as f:
            f.write("half")
            raise RuntimeError("killed mid-write")
    assert p.read_text() == "good\n"
    assert os.listdir(tmp_path) == ["sub.csv"]


def test_full_disk_names_the_final_file(tmp_path, monkeypatch):
    p = tmp_path / "sub.csv"
    p.write_text("good\n")

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OutputError) as e:
        atomic_write_text(p, "new")
    msg = str(e.value)
    assert str(p) in msg and "no space left" in msg and ".tmp" not in msg
    assert p.read_text() == "good\n" and os.listdir(tmp_path) == ["sub.csv"]


def test_read_only_folder_fails_before_work(tmp_path, monkeypatch):
    def ro(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", ro)
    with pytest.raises(OutputError, match=r"out\.csv: the file system is read-only"):
        check_writable(tmp_path / "out.csv")
    with pytest.raises(OutputError, match=r"out\.csv: the file system is read-only"):
        atomic_write_text(tmp_path / "out.csv", "x")


def test_check_writable_refuses_a_folder(tmp_path):
    with pytest.raises(OutputError, match="is a folder"):
        check_writable(tmp_path)
    check_writable(tmp_path / "new" / "deeper" / "f.csv")
    assert os.listdir(tmp_path / "new" / "deeper") == []
