"""Issue 8's catalogue, TTA side: every bad input to predict / evaluate / tta fit ends in one of
three outcomes — a clear one-line error (exit code != 0, nothing written over), a counted skip, or
correct handling — decided before the compute where the input allows it.

One table, one parametrized test. Each row: case id (issue 8's numbering), outcome class, a
function that prepares the case and returns the argv, the key words the output must hold, the
exit code (0 or "nonzero"), the output file that existed before and must stay byte-identical
(None where nothing could be overwritten), and an optional extra check.
"""

from __future__ import annotations

import csv
import errno
import json
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import BLOBS4, BlobModel, write_blob_dataset

import augkit as ak
import augkit.config
from augkit.tta import runners
from augkit.cli import main
from augkit.presets import preprocess_steps

PREVIOUS = b"file_name,Point_M0_X,Point_M0_Y\nold.png,1,2\n"


class ConstModel:
    """Finite points for any input (also a grey fallback image): the blob finder where it finds
    blobs, else the centre of the input; ``offset`` shifts every point (a bad model); ``k`` points."""

    def __init__(self, k: int = 4, offset: float = 0.0):
        self.preprocess = ak.Compose(preprocess_steps(64, "letterbox"))
        self.scheme = BLOBS4 if k == 4 else None
        self.n_points, self.offset, self.calls = k, offset, 0
        self._blob = BlobModel(self.preprocess)

    def __call__(self, batch):
        self.calls += 1
        out = np.full((len(batch), self.n_points, 2), 32.0)
        if self.n_points == 4:
            found = self._blob(batch)
            out = np.where(np.isfinite(found), found, out)
        return out + self.offset


@dataclass
class Ctx:
    tmp: object
    data: object
    names: list
    models: list
    monkeypatch: object

    def ck(self, name="model.pt"):
        p = self.tmp / name
        p.write_bytes(b"stand-in")
        return str(p)

    def out(self, name="sub.csv"):
        p = self.tmp / name
        p.write_bytes(PREVIOUS)
        return str(p)


def _break_all_images(ctx):
    for n in ctx.names:
        (ctx.data / "images" / n).write_bytes(b"")


# --------------------------------------------------------------------------------- case setups

def c1_none_readable(ctx):
    _break_all_images(ctx)
    return ["predict", "--checkpoint", ctx.ck(), "--data", str(ctx.data), "--out", ctx.out()]


def c1_some_unreadable(ctx):
    (ctx.data / "images" / ctx.names[1]).write_bytes(b"not an image")
    return ["predict", "--checkpoint", ctx.ck(), "--data", str(ctx.data), "--tta", "flip", "--out", ctx.out()]


def check_fallback_rows(ctx, res):
    rows = list(csv.reader(open(ctx.tmp / "sub.csv")))
    tp = [line.split("\t")[0] for line in (ctx.data / "test_points.csv").read_text().splitlines()[1:]]
    assert [r[0] for r in rows[1:]] == tp          # never short: the unreadable image has its row
    assert all(v.lstrip("-").isdigit() for r in rows[1:] for v in r[1:])


def c1_strict(ctx):
    (ctx.data / "images" / ctx.names[2]).write_bytes(b"")
    return ["predict", "--checkpoint", ctx.ck(), "--data", str(ctx.data), "--out", ctx.out(), "--strict"]


def c7_quoted_names(ctx):
    import cv2
    odd = ['comma,name.png', 'say "cheese".png']
    img = cv2.imread(str(ctx.data / "images" / ctx.names[0]))
    lines = ["file_name\tpoint_index_list"]
    for n in odd:
        cv2.imwrite(str(ctx.data / "images" / n), img)
        lines.append(f"{n}\t[0, 2]")
    (ctx.data / "test_points.csv").write_text("\n".join(lines) + "\n")
    return ["predict", "--checkpoint", ctx.ck(), "--data", str(ctx.data), "--out", str(ctx.tmp / "sub.csv")]


def check_quoted(ctx, res):
    rows = list(csv.reader(open(ctx.tmp / "sub.csv")))
    assert [r[0] for r in rows[1:]] == ['comma,name.png', 'say "cheese".png']
    assert all(len(r) == 5 for r in rows)


def c8_index_too_large(ctx):
    lines = (ctx.data / "test_points.csv").read_text().splitlines()
    name = lines[3].split("\t")[0]
    lines[3] = f"{name}\t[0, 7]"
    (ctx.data / "test_points.csv").write_text("\n".join(lines) + "\n")
    return ["predict", "--checkpoint", ctx.ck(), "--data", str(ctx.data), "--out", ctx.out()]


def c8_zero_view_weights(ctx):
    spec = ctx.tmp / "zero.yaml"
    spec.write_text("views:\n  - {name: a, steps: [], weight: 0}\n  - {name: b, steps: [{type: HFlip}], weight: 0}\n")
    return ["predict", "--checkpoint", ctx.ck(), "--data", str(ctx.data), "--tta", str(spec), "--out", ctx.out()]


def c8_zero_fitted_weights(ctx):
    spec = ctx.tmp / "zerofit.yaml"
    spec.write_text("preset: flip\nweights: {kind: per_view, values: [0, 0]}\n")
    return ["predict", "--checkpoint", ctx.ck(), "--data", str(ctx.data), "--tta", str(spec), "--out", ctx.out()]


def c8_scheme_count(ctx):
    return ["predict", "--checkpoint", ctx.ck(), "--data", str(ctx.data), "--scheme", "ibug68", "--tta", "flip",
            "--out", ctx.out()]


def c8_read_only_folder(ctx):
    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")
    ctx.monkeypatch.setattr(augkit.files.tempfile, "mkstemp", refuse)   # what a read-only folder does (root ignores chmod)
    return ["predict", "--checkpoint", ctx.ck(), "--data", str(ctx.data), "--out", ctx.out()]


def c8_full_disk(ctx):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    ctx.monkeypatch.setattr(augkit.files.os, "fsync", full)             # the disk fills while writing
    return ["predict", "--checkpoint", ctx.ck(), "--data", str(ctx.data), "--out", ctx.out()]


def check_no_temp_left(ctx, res):
    assert ".tmp" not in res.output
    assert not [p for p in os.listdir(ctx.tmp) if p.endswith(".tmp")]


def c9_evaluate_all_bad(ctx):
    _break_all_images(ctx)
    return ["evaluate", "--checkpoint", ctx.ck(), "--data", str(ctx.data), "--json", ctx.out("m.json")]


def c9_evaluate_wrong_k(ctx):
    return ["evaluate", "--checkpoint", ctx.ck("k5.pt"), "--data", str(ctx.data), "--json", ctx.out("m.json")]


def c9_fit_all_bad(ctx):
    _break_all_images(ctx)
    return ["tta", "fit", "--checkpoint", ctx.ck(), "--data", str(ctx.data), "--tta", "flip",
            "--out", ctx.out("fit.yaml")]


def c9_fit_wrong_k(ctx):
    return ["tta", "fit", "--checkpoint", ctx.ck("k5.pt"), "--data", str(ctx.data), "--tta", "flip",
            "--out", ctx.out("fit.yaml")]


def c12_wide_table(ctx):
    return ["evaluate", "--checkpoint", ctx.ck("far.pt"), "--data", str(ctx.data), "--tta", "flip", "--n-worst", "0",
            "--json", str(ctx.tmp / "m.json")]


def check_wide_table(ctx, res):
    lines = res.output.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("setting"))
    table = lines[head:head + 3]
    mse = json.loads((ctx.tmp / "m.json").read_text())["results"][0]["mse"]
    assert mse > 1e6                                  # numbers wider than the old fixed columns
    for line in table:
        assert len(line.split()) == 7, line          # every column apart from the next
    assert len({len(line) for line in table}) == 1   # right-aligned to one width


@dataclass
class Case:
    id: str
    outcome: str                       # "error" | "skip" | "handled"
    setup: Callable
    keywords: tuple
    exit: object                       # 0 or "nonzero"
    keep: str | None = None            # pre-existing output that must stay byte-identical
    check: Callable | None = None
    no_compute: bool = False           # decided before any model call


CATALOGUE = [
    Case("1.a", "error", c1_none_readable, ("none of the", "could be read", "left unchanged"), "nonzero", "sub.csv"),
    Case("1.b", "skip", c1_some_unreadable, ("WARNING", "1 of 8", "fallback"), 0, None, check_fallback_rows),
    Case("1.c", "error", c1_strict, ("test_points.csv: line", "empty", "--strict"), "nonzero", "sub.csv"),
    Case("7", "handled", c7_quoted_names, ("wrote", "2 rows"), 0, None, check_quoted),
    Case("8.1", "error", c8_index_too_large, ("test_points.csv: line 4", "point index 7", "0..3"), "nonzero",
         "sub.csv", None, True),
    Case("8.2a", "error", c8_zero_view_weights, ("zero.yaml", "weight", "zero"), "nonzero", "sub.csv", None, True),
    Case("8.2b", "error", c8_zero_fitted_weights, ("zerofit.yaml", "weights", "zero"), "nonzero", "sub.csv", None,
         True),
    Case("8.3", "error", c8_scheme_count, ("--scheme ibug68", "68 points", "predict 4"), "nonzero", "sub.csv", None,
         True),
    Case("8.4a", "error", c8_read_only_folder, ("cannot write", "sub.csv", "permission denied"), "nonzero", "sub.csv",
         check_no_temp_left, True),
    Case("8.4b", "error", c8_full_disk, ("cannot write", "sub.csv", "no space left"), "nonzero", "sub.csv",
         check_no_temp_left),
    Case("9.1", "error", c9_evaluate_all_bad, ("none of the 8 labelled image(s) could be read",), "nonzero", "m.json"),
    Case("9.2", "error", c9_evaluate_wrong_k, ("labels have 4 points", "predict 5"), "nonzero", "m.json", None, True),
    Case("9.3", "error", c9_fit_all_bad, ("none of the 8 labelled image(s) could be read",), "nonzero", "fit.yaml"),
    Case("9.4", "error", c9_fit_wrong_k, ("labels have 4 points", "predict 5"), "nonzero", "fit.yaml", None, True),
    Case("12", "handled", c12_wide_table, ("MSE", "rho_img"), 0, None, check_wide_table),
]


@pytest.fixture
def ctx(tmp_path, monkeypatch):
    data = tmp_path / "data"
    names, _ = write_blob_dataset(data, n=8, seed=3)
    c = Ctx(tmp_path, data, names, [], monkeypatch)

    def load(paths, device="cpu"):
        ms = []
        for p in paths:
            base = os.path.basename(p)
            ms.append(ConstModel(k=5) if base == "k5.pt" else ConstModel(offset=3000.0 if base == "far.pt" else 0.0))
        c.models.extend(ms)
        return ms

    monkeypatch.setattr(runners, "load_models", load)
    return c


@pytest.mark.parametrize("case", CATALOGUE, ids=[c.id for c in CATALOGUE])
def test_catalogue(case, ctx):
    argv = case.setup(ctx)
    res = CliRunner().invoke(main, argv)
    out = res.output
    assert not isinstance(res.exception, (ValueError, TypeError, KeyError, IndexError, OSError)), \
        f"traceback instead of a clear outcome: {res.exception!r}\n{out}"
    if case.exit == 0:
        assert res.exit_code == 0, out
    else:
        assert res.exit_code not in (0, None), out
    for word in case.keywords:
        assert word in out, f"{word!r} not in: {out}"
    if case.outcome == "error":
        errors = [line for line in out.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, out                       # one line
        assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), res.exception
        assert "shape" not in errors[0] and "broadcast" not in errors[0]
    if case.keep:
        assert (ctx.tmp / case.keep).read_bytes() == PREVIOUS, "an earlier output was written over"
    if case.no_compute:
        assert all(m.calls == 0 for m in ctx.models), "the error came after the model ran"
    if case.check:
        case.check(ctx, res)
