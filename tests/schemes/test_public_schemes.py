"""The built-in layouts of the public face benchmarks (wflw98, cofw29, aflw19): their published flip
pairs mirror a face that is symmetric by construction, agree with the pair lists as HRNet prints
them (1-based for COFW / AFLW), keep the anatomical points on the axis, and respect the parts."""

from __future__ import annotations

import numpy as np
import pytest

import augkit as ak
from augkit.errors import InputError
from augkit.schemes import AFLW19, BUILTIN, COFW29, WFLW98, Scheme, get_scheme

# HRNet-Facial-Landmark-Detection lib/utils/transforms.py MATCHED_PARTS, as printed there
# (WFLW 0-based, COFW and AFLW 1-based): a second transcription of the published lists.
HRNET = {
    "wflw98": ([(0, 32), (1, 31), (2, 30), (3, 29), (4, 28), (5, 27), (6, 26), (7, 25), (8, 24), (9, 23), (10, 22),
                (11, 21), (12, 20), (13, 19), (14, 18), (15, 17), (33, 46), (34, 45), (35, 44), (36, 43), (37, 42),
                (38, 50), (39, 49), (40, 48), (41, 47), (60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75),
                (66, 74), (67, 73), (55, 59), (56, 58), (76, 82), (77, 81), (78, 80), (87, 83), (86, 84), (88, 92),
                (89, 91), (95, 93), (96, 97)], 0),
    "cofw29": ([(1, 2), (5, 7), (3, 4), (6, 8), (9, 10), (11, 12), (13, 15), (17, 18), (14, 16), (19, 20),
                (23, 24)], 1),
    "aflw19": ([(1, 6), (2, 5), (3, 4), (7, 12), (8, 11), (9, 10), (13, 15), (16, 18)], 1),
}
# the points on the face's axis (their own mirror): chin, nose bridge and tip, the lips' middle
ON_AXIS = {"wflw98": {16, 51, 52, 53, 54, 57, 79, 85, 90, 94}, "cofw29": {20, 21, 24, 25, 26, 27, 28},
           "aflw19": {13, 16, 18}}
SCHEMES = [WFLW98, COFW29, AFLW19]


def _symmetric_face(scheme: Scheme, width: int = 201) -> np.ndarray:
    """A face mirror-symmetric about x = (width - 1) / 2 by construction: each pair at (c - d, y)
    and (c + d, y) with its own d and y, each unpaired point on the axis at its own height (all
    values exact in binary, so the mirror is exact too)."""
    c = (width - 1) / 2
    pts = np.full((scheme.n_points, 2), np.nan)
    rng = np.random.default_rng(len(scheme.flip_pairs))
    for a, b in scheme.flip_pairs:
        d, y = rng.integers(20, 360) / 4, rng.integers(40, 760) / 4     # quarters: exact in binary
        pts[a], pts[b] = (c - d, y), (c + d, y)
    alone = np.isnan(pts[:, 0])
    pts[alone] = np.stack([np.full(alone.sum(), c), np.linspace(20, 180, alone.sum())], axis=1)
    return pts


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
def test_flip_pairs_mirror_a_symmetric_face_exactly(scheme):
    width = 201
    face = _symmetric_face(scheme, width)
    mirrored = face.copy()
    mirrored[:, 0] = width - 1 - mirrored[:, 0]
    np.testing.assert_array_equal(mirrored[scheme.perm], face)
    assert not np.array_equal(mirrored, face)          # the mirror alone moves the paired points
    # and through the library's flip: HFlip with the scheme gives the face back
    image = np.zeros((200, width, 3), np.uint8)
    out = ak.Compose([ak.HFlip()], scheme=scheme.name)(image, face.astype(np.float32))
    np.testing.assert_allclose(out.points, face, atol=1e-4)


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
def test_pairs_are_the_published_lists(scheme):
    pairs, base = HRNET[scheme.name]
    published = {frozenset((a - base, b - base)) for a, b in pairs}
    assert {frozenset(p) for p in scheme.flip_pairs} == published
    assert len(scheme.flip_pairs) == len(pairs)


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
def test_axis_points_norm_pupils_and_parts(scheme):
    perm = scheme.perm
    assert set(np.flatnonzero(perm == np.arange(scheme.n_points)).tolist()) == ON_AXIS[scheme.name]
    assert (perm[perm] == np.arange(scheme.n_points)).all()
    # the normalising points are a left/right pair: the eye corners and the pupils mirror each other
    a, b = scheme.norm
    assert perm[a] == b
    a, b = scheme.pupils
    assert perm[a] == b
    # every point in exactly one part; no pair crosses parts (no mirror_parts needed)
    of = scheme.part_index()
    assert (of >= 0).all()
    assert all(of[a] == of[b] for a, b in scheme.flip_pairs)
    assert scheme.mirror_parts == ()
    # the constructor's check: a pair across two parts (here the last part's first point with the
    # point before it) is refused
    lo = scheme.parts[-1][1][0]
    with pytest.raises(InputError, match="crosses two parts"):
        Scheme("bad", scheme.n_points, ((lo - 1, lo),), parts=scheme.parts)


def test_the_normalisers_each_benchmark_uses():
    assert WFLW98.norm == (60, 72) and WFLW98.pupils == (96, 97) and not WFLW98.box_norm
    assert COFW29.norm == (8, 9) and COFW29.pupils == (16, 17) and not COFW29.box_norm
    assert AFLW19.box_norm and AFLW19.norm == (6, 11)
    assert [n for n, _ in WFLW98.parts] == ["contour", "eyebrows", "nose", "eyes", "mouth", "pupils"]


@pytest.mark.parametrize("name", ["wflw98", "cofw29", "aflw19"])
def test_builtins_by_name_and_round_trip_through_a_file(name, tmp_path):
    scheme = get_scheme(name)
    assert scheme is BUILTIN[name] and scheme.builtin
    path = tmp_path / f"{name}.yaml"
    scheme.save(str(path))
    back = get_scheme(str(path))
    assert back == scheme and back.pupils == scheme.pupils and back.box_norm == scheme.box_norm


def test_pupils_and_box_norm_are_checked():
    with pytest.raises(InputError, match="pupils must be two"):
        Scheme("s", 3, pupils=(0, 5))
    with pytest.raises(InputError, match="box_norm must be true or false"):
        Scheme("s", 3, box_norm="yes")


def test_ibug68_inter_pupil_uses_the_eye_centres():
    """300-W's inter-pupil NME divides by the distance between the centres of the six points
    around each eye (36-41, 42-47): a hand-computed case."""
    from augkit import metrics
    true = np.zeros((1, 68, 2))
    true[0, 36:42] = [[10, 20], [12, 18], [14, 18], [16, 20], [14, 22], [12, 22]]   # centre (13, 20)
    true[0, 42:48] = [[40, 20], [42, 18], [44, 18], [46, 20], [44, 22], [42, 22]]   # centre (43, 20)
    pred = true + [3.0, 4.0]                                                         # every point 5 px off
    assert metrics.normaliser(true, ak.IBUG68, "pupils")[0] == pytest.approx(30.0)
    assert metrics.per_image_nme(pred, true, ak.IBUG68, "pupils")[0] == pytest.approx(5.0 / 30.0)
    assert metrics.per_image_nme(pred, true, ak.IBUG68)[0] == pytest.approx(5.0 / 36.0)   # outer corners 36, 45
    d = ak.IBUG68.to_dict()
    assert d["pupils"] == [list(range(36, 42)), list(range(42, 48))]
    assert get_scheme({**d, "name": "copy"}).pupils == ak.IBUG68.pupils      # a scheme file holds the groups


@pytest.mark.parametrize("pupils", [(1,), (1, 1), ((1, 2), (2, 3)), ((), (3,)), ("ab", 2), ((0, 99), (3, 4))])
def test_bad_pupils_are_one_clear_line(pupils):
    with pytest.raises(ValueError, match="pupils") as e:
        ak.Scheme("five", 5, (), pupils=pupils)
    assert "\n" not in str(e.value)
