"""Issue 8, core part: every bad input of the catalogue ends in a clear error, a counted skip, or
correct handling. One row per case; one parametrized test checks the outcome class, the key words
of the message, the exit code or exception type, and that an earlier output is byte-identical.

Outcome classes:
    error    the call raises (API) or exits != 0 (CLI) with one clear line naming what, found, expected
    skip     the call succeeds and says what it skipped, with the reason
    handled  the call does the right thing (the row's check asserts what that is)
"""

from __future__ import annotations

import json
import os
import stat
import struct
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import augkit as ak
from augkit.cli import main
from augkit.io import exif_orientation, image_size, read_image


# ------------------------------------------------------------------------------------ fixtures

def write_faces(folder, n: int = 5, bad: tuple = ()) -> str:
    """A competition-layout dataset of synthetic 68-point faces; indices in ``bad`` get zero-byte images."""
    from augkit.data.synthetic import make_face
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    header = ["file_name"] + [f"Point_{i}_{a}" for i in range(68) for a in "XY"]
    lines = ["\t".join(header)]
    for i in range(n):
        image, points = make_face(np.random.default_rng([7, i]), size_range=(90, 110))
        name = f"f{i}.jpg"
        path = os.path.join(folder, "images", name)
        if i in bad:
            open(path, "wb").close()
        else:
            cv2.imwrite(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        lines.append("\t".join([name] + [f"{v:.2f}" for v in points.reshape(-1)]))
    with open(os.path.join(folder, "landmarks.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return str(folder)


def empty_set(folder) -> str:
    write_faces(folder, n=1)
    with open(os.path.join(folder, "landmarks.csv")) as f:
        header = f.readline()
    with open(os.path.join(folder, "landmarks.csv"), "w") as f:
        f.write(header)
    return str(folder)


def jpeg_with_orientation(bgr, orientation: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    tiff = (b"MM" + struct.pack(">HI", 42, 8) + struct.pack(">H", 1) + struct.pack(">HHI", 0x0112, 3, 1)
            + struct.pack(">HH", orientation, 0) + struct.pack(">I", 0))
    payload = b"Exif\x00\x00" + tiff
    data = buf.tobytes()
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def a_record():
    pipe = ak.Compose([ak.Affine(rotate=(-10, 10), scale=(0.8, 1.2)), ak.HFlip(p=0.0)], scheme="ibug68")
    image = np.zeros((50, 60, 3), np.uint8)
    return pipe, image, json.loads(json.dumps(pipe(image, rng=np.random.default_rng(1)).record))


def edited(change: Callable[[dict], None]) -> tuple:
    pipe, image, rec = a_record()
    change(rec)
    return pipe, image, rec


# ------------------------------------------------------------------------------ the handled checks

def orientation_6_is_displayed(tmp):
    stored = np.zeros((157, 196, 3), np.uint8)
    stored[:, :20] = 255  # a bar on the stored left edge ends at the displayed top
    (tmp / "phone.jpg").write_bytes(jpeg_with_orientation(stored, 6))
    got = read_image(tmp / "phone.jpg")
    ref = cv2.cvtColor(cv2.imread(str(tmp / "phone.jpg"), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert got.shape == (196, 157, 3) and np.array_equal(got, ref)
    assert image_size(tmp / "phone.jpg") == (157, 196)
    assert got[:15].mean() > 200 and got[30:].mean() < 30


def malformed_exif_is_orientation_1(tmp):
    data = jpeg_with_orientation(np.zeros((10, 20, 3), np.uint8), 6)
    broken = data[:30] + b"\xff" * 4 + data[34:]  # the IFD offset now points far past the segment
    assert exif_orientation(broken) == 1 and exif_orientation(data[:25]) == 1
    assert exif_orientation(b"\xff\xd8\xff\xe1\x00\x01") == 1  # a length below 2


def steps_on(dtype, tmp):
    img8 = (np.random.default_rng(0).random((30, 40, 3)) * 255).astype(np.uint8)
    top = {np.uint16: 65535.0, np.float32: 1.0}[dtype]
    img = (img8.astype(np.float64) * top / 255).astype(dtype)
    for step in (ak.BrightnessContrast(brightness=0.1, contrast=1.3), ak.Gamma(0.6), ak.JpegQuality(40),
                 ak.Noise(std=5)):
        ref = ak.Compose([step])(img8, rng=np.random.default_rng(2)).image
        out = ak.Compose([step])(img, rng=np.random.default_rng(2)).image
        assert out.dtype == dtype and 0 <= out.min() and out.max() <= top
        assert np.abs(out / top - ref / 255.0).mean() < 0.005, type(step).__name__


def float_noise_is_scaled(tmp):
    out = ak.Compose([ak.Noise(std=5)])(np.full((100, 100), 0.5, np.float32), rng=np.random.default_rng(0)).image
    assert abs(out.std() - 5 / 255) < 0.002  # not 5 whole units on a [0, 1] image


def integral_float_pair_is_accepted(tmp):
    (tmp / "s.yaml").write_text("name: s\nn_points: 68\nflip_pairs: [[36.0, 45]]\nnorm: [36.0, 45]\n")
    sch = ak.get_scheme(str(tmp / "s.yaml"))
    assert sch.flip_pairs == ((36, 45),) and sch.norm == (36, 45)


def replay_of_an_intact_record_agrees_with_invert(tmp):
    pipe, image, rec = a_record()
    pts = np.random.default_rng(0).uniform(5, 45, (68, 2))
    again = pipe.replay(rec, image, pts)
    np.testing.assert_allclose(ak.invert_points(rec, again.points, "ibug68"), pts, atol=1e-9)


def mode_after_show(tmp, existing_mode):
    out = tmp / "grid.png"
    if existing_mode is not None:
        out.write_bytes(b"old")
        os.chmod(out, existing_mode)
    res = CliRunner().invoke(main, ["show", "--n", "1", "--size", "32", "--out", str(out)])
    assert res.exit_code == 0, res.output
    umask = os.umask(0)
    os.umask(umask)
    want = existing_mode if existing_mode is not None else 0o666 & ~umask
    assert stat.S_IMODE(os.stat(out).st_mode) == want
    assert cv2.imread(str(out)) is not None


# ---------------------------------------------------------------------------------- the table

@dataclass
class Case:
    id: str
    outcome: str  # "error" | "skip" | "handled"
    cli: Callable | None = None  # tmp -> argv
    api: Callable | None = None  # tmp -> None (raises for errors, asserts for handled)
    words: tuple = ()  # key words of the message (case-insensitive)
    code: int | None = None  # CLI exit code
    exc: type | None = None  # API exception type
    protect: str | None = None  # a file under tmp written beforehand that must stay byte-identical
    keywords_in_err: bool = False  # CLI: look for the words in stderr (skip reasons) too


def show(tmp, data, *extra):
    return ["show", "--data", data, "--n", "4", "--size", "32", "--out", str(tmp / "out.png"), *extra]


CASES = [
    # case 3: EXIF orientation
    Case("3a", "handled", api=orientation_6_is_displayed),
    Case("3b", "handled", api=malformed_exif_is_orientation_1),
    # case 5: file modes of written outputs
    Case("5a", "handled", api=lambda t: mode_after_show(t, 0o644)),
    Case("5b", "handled", api=lambda t: mode_after_show(t, None)),
    # case 8: show / scheme check / scheme infer
    Case("8.10a", "skip", cli=lambda t: show(t, write_faces(t / "d", bad=(1,)), "--n", "5"), code=0,
         words=("skipped 1 unreadable image", "f1.jpg", "empty"), protect=None, keywords_in_err=True),
    Case("8.10b", "error", cli=lambda t: show(t, write_faces(t / "d", n=2, bad=(0, 1))), code=1,
         words=("no samples to draw", "2 unreadable", "f0.jpg"), protect="out.png"),
    Case("8.11a", "error", cli=lambda t: show(t, write_faces(t / "d"), "--scheme", "nope"), code=2,
         words=("--scheme", "unknown scheme 'nope'", "built-in name"), protect="out.png"),
    Case("8.11b", "error", cli=lambda t: ["scheme", "check", "--data", write_faces(t / "d"), "--scheme", "nope"],
         code=2, words=("--scheme", "unknown scheme 'nope'", "ibug68")),
    Case("8.11c", "error", cli=lambda t: ["scheme", "infer", "--data", write_faces(t / "d"), "--scheme", "nope",
                                          "--out", str(t / "out.png")], code=2,
         words=("--scheme", "unknown scheme 'nope'", "built-in name"), protect="out.png"),
    Case("8.12a", "error", cli=lambda t: show(t, empty_set(t / "d")), code=1,
         words=("landmarks.csv", "empty"), protect="out.png"),
    Case("8.12b", "error", cli=lambda t: ["scheme", "check", "--data", empty_set(t / "d")], code=1,
         words=("landmarks.csv", "empty")),
    Case("8.12c", "error", cli=lambda t: ["scheme", "infer", "--data", empty_set(t / "d"),
                                          "--out", str(t / "out.png")], code=1,
         words=("landmarks.csv", "empty"), protect="out.png"),
    Case("8.12d", "error", cli=lambda t: show(t, str(t / "missing")), code=1,
         words=("missing", "no such file or folder"), protect="out.png"),
    Case("8.13", "error", cli=lambda t: ["scheme", "infer", "--data", write_faces(t / "d"), "--norm", "36", "99",
                                         "--out", str(t / "out.png")], code=2,
         words=("'--norm'", "36 99", "index 99 is out of range", "0..67"), protect="out.png"),
    Case("8.14", "error", cli=lambda t: show(t, write_faces(t / "d"), "--scheme", five_point_scheme(t)), code=1,
         words=("68 points per face", "has 5"), protect="out.png"),
    Case("8.15", "error", cli=lambda t: show(t, write_faces(t / "d"))[:-1] + [read_only_folder(t) + "/g.png"],
         code=1, words=("cannot write", "ro/g.png", "permission denied")),
    # case 10: dtypes, records
    Case("10a", "handled", api=lambda t: steps_on(np.uint16, t)),
    Case("10b", "handled", api=lambda t: steps_on(np.float32, t)),
    Case("10c", "handled", api=float_noise_is_scaled),
    Case("10d", "error", api=lambda t: ak.Compose([ak.Gamma(0.5)])(np.zeros((8, 8)), rng=np.random.default_rng(0)),
         exc=TypeError, words=("float64", "uint8 (0-255)", "float32 (0-1)", "convert")),
    Case("10e", "error", api=lambda t: (lambda p, i, r: p.replay(r, i))(*edited(
        lambda r: r["M"][0].__setitem__(2, r["M"][0][2] + 37.0))),
         exc=ValueError, words=("field 'm'", "does not match", "edited")),
    Case("10f", "error", api=lambda t: (lambda p, i, r: p.replay(r, i))(*edited(
        lambda r: r.__setitem__("in", [10, 10]))), exc=ValueError, words=("field 'in'", "[10, 10]", "[60, 50]")),
    Case("10g", "error", api=lambda t: (lambda p, i, r: p.replay(r, i))(*edited(
        lambda r: r["steps"][0].__setitem__("scale", 0))), exc=ValueError, words=("affine", "scale=0", ">= 0.001")),
    Case("10h", "error", api=lambda t: ak.invert_points(edited(lambda r: r.pop("M"))[2], np.zeros((68, 2))),
         exc=ValueError, words=("no field 'm'",)),
    Case("10i", "error", api=lambda t: ak.invert_points(edited(lambda r: r.__setitem__("M", [[1, 0], [0, 1]]))[2],
                                                        np.zeros((68, 2))),
         exc=ValueError, words=("field 'm'", "2x3 matrix", "[[1, 0], [0, 1]]")),
    Case("10j", "error", api=lambda t: ak.invert_points(edited(lambda r: r.__setitem__("M", [["a", 0, 0], [0, 1, 0]]))[2],
                                                        np.zeros((68, 2))),
         exc=ValueError, words=("field 'm'", "finite numbers", "'a'")),
    Case("10k", "error", api=lambda t: ak.invert_points(edited(lambda r: r.__setitem__("M", [[0, 0, 1], [0, 0, 2]]))[2],
                                                        np.zeros((68, 2))),
         exc=ValueError, words=("field 'm'", "singular")),
    Case("10l", "error", api=lambda t: ak.invert_points(edited(lambda r: r.__setitem__("flips", "x"))[2],
                                                        np.zeros((68, 2))),
         exc=ValueError, words=("field 'flips'", "'x'", "whole number")),
    Case("10m", "handled", api=replay_of_an_intact_record_agrees_with_invert),
    # case 11: float flip-pair indices
    Case("11a", "error", api=lambda t: ak.get_scheme(scheme_file(t, "[[36.5, 45]]")), exc=ValueError,
         words=("s.yaml", "flip pair [36.5, 45]", "36.5", "whole number")),
    Case("11b", "handled", api=integral_float_pair_is_accepted),
    Case("11c", "error", cli=lambda t: ["scheme", "check", "--data", write_faces(t / "d"),
                                        "--scheme", scheme_file(t, "[[0, 16], [36, 45.25]]")], code=2,
         words=("--scheme", "s.yaml", "45.25", "whole number")),
]


def scheme_file(tmp, pairs: str) -> str:
    (tmp / "s.yaml").write_text(f"name: s\nn_points: 68\nflip_pairs: {pairs}\n")
    return str(tmp / "s.yaml")


def read_only_folder(tmp) -> str:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    os.makedirs(tmp / "ro")
    os.chmod(tmp / "ro", 0o555)
    return str(tmp / "ro")


def five_point_scheme(tmp) -> str:
    (tmp / "five.yaml").write_text("name: five\nn_points: 5\nflip_pairs: [[0, 1], [3, 4]]\n")
    return str(tmp / "five.yaml")


def test_catalogue_ids_are_unique_and_classes_known():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert {c.outcome for c in CASES} <= {"error", "skip", "handled"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_catalogue(case, tmp_path):
    before = None
    if case.protect:
        before = os.urandom(64)
        (tmp_path / case.protect).write_bytes(before)
    if case.cli is not None:
        res = CliRunner().invoke(main, case.cli(tmp_path))
        text = res.output + (res.stderr if case.keywords_in_err else "")
        assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)  # no traceback
        assert res.exit_code == case.code, res.output
        if case.outcome == "error":
            lines = [ln for ln in res.output.splitlines() if ln.startswith("Error")]
            assert len(lines) == 1, res.output  # one clear line
    else:
        text = ""
        if case.outcome == "error":
            with pytest.raises(case.exc) as info:
                case.api(tmp_path)
            text = str(info.value)
            assert "\n" not in text, text
        else:
            case.api(tmp_path)
    for word in case.words:
        assert word.lower() in text.lower(), f"{word!r} not in {text!r}"
    if case.protect:
        assert (tmp_path / case.protect).read_bytes() == before  # nothing written over
