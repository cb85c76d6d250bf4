"""`augkit scheme export --to albumentations|mmpose|ultralytics`: each library, applying the
exported pairs by its own documented convention, flips the points exactly as augkit's HFlip does
(ibug68 and a 971-point dense layout built from it)."""

import importlib.metadata as md

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import augkit as ak
from augkit.cli import main
from augkit.scheme_export import export_flip_pairs
from augkit.schemes import Scheme


def _dense971() -> Scheme:
    """The competition's part sizes (contour 273, brows 128, nose 186, eyes 254, mouth 128, pupils 2),
    each part an ibug68-like run with its own pairs: point i of a part pairs with its mirror index."""
    sizes = [("contour", 273), ("eyebrows", 128), ("nose", 186), ("eyes", 254), ("mouth", 128), ("pupils", 2)]
    pairs, parts, lo = [], [], 0
    for name, n in sizes:
        parts.append((name, (lo, lo + n - 1)))
        pairs += [(lo + i, lo + n - 1 - i) for i in range(n // 2)]
        lo += n
    return Scheme("dense971", lo, tuple(pairs), parts=tuple(parts))


SCHEMES = [ak.get_scheme("ibug68"), _dense971()]


def _augkit_source(scheme) -> np.ndarray:
    """For each point of augkit's HFlip output, the input point it came from (found by its y, all
    distinct), with the x mirrored about one line for all points."""
    rng = np.random.default_rng(0)
    k = scheme.n_points
    pts = np.column_stack([rng.uniform(20, 180, k), rng.permutation(k) * 0.1 + 10])
    out = ak.Compose([ak.HFlip(p=1.0)], scheme=scheme)(np.zeros((200, 200, 3), np.uint8), pts)
    src = np.array([int(np.argmin(np.abs(pts[:, 1] - y))) for y in out.points[:, 1]])
    np.testing.assert_allclose(out.points[:, 1], pts[src, 1])
    centre = out.points[:, 0] + pts[src, 0]
    assert np.ptp(centre) < 1e-9  # one mirror line
    return src


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
def test_ultralytics_flip_idx(scheme):
    data = yaml.safe_load(export_flip_pairs(scheme, "ultralytics"))
    assert data["kpt_shape"] == [scheme.n_points, 2]
    # ultralytics RandomFlip: keypoints = keypoints[:, flip_idx] after mirroring x
    np.testing.assert_array_equal(np.array(data["flip_idx"]), _augkit_source(scheme))


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
def test_mmpose_dataset_info_gives_the_same_flip_indices(scheme):
    namespace: dict = {}
    exec(export_flip_pairs(scheme, "mmpose"), namespace)  # noqa: S102 - the file is a Python config, as mmpose's
    info = namespace["dataset_info"]
    kp = info["keypoint_info"]
    assert sorted(kp) == list(range(scheme.n_points)) and len(info["joint_weights"]) == scheme.n_points
    # mmpose's parse_pose_metainfo: flip_indices[i] = the id named by point i's swap (itself when empty);
    # flip_keypoints then takes keypoints[..., flip_indices, :] after mirroring x
    name2id = {v["name"]: v["id"] for v in kp.values()}
    flip_indices = [name2id[kp[i]["swap"]] if kp[i]["swap"] else i for i in range(scheme.n_points)]
    np.testing.assert_array_equal(flip_indices, _augkit_source(scheme))


def test_albumentationsx_label_mapping_flips_like_augkit():
    try:
        md.version("albumentationsx")
    except md.PackageNotFoundError:
        pytest.skip("AlbumentationsX is not installed (albumentations 2.0.x has no label_mapping)")
    import albumentations as A
    scheme = ak.get_scheme("ibug68")
    namespace: dict = {}
    exec(export_flip_pairs(scheme, "albumentations"), namespace)  # noqa: S102
    rng = np.random.default_rng(1)
    pts = np.column_stack([rng.uniform(20, 180, 68), rng.uniform(20, 180, 68)])
    image = np.zeros((200, 200, 3), np.uint8)
    res = A.Compose([A.HorizontalFlip(p=1.0)], keypoint_params=A.KeypointParams(
        coord_format="xy", label_fields=["keypoint_labels"], remove_invisible=False,
        label_mapping=namespace["label_mapping"]))(image=image, keypoints=pts, keypoint_labels=list(range(68)))
    got = np.asarray(res["keypoints"])  # AlbumentationsX reorders the array by the new labels itself
    ours = ak.Compose([ak.HFlip(p=1.0)], scheme=scheme)(image, pts).points
    np.testing.assert_allclose(got[:, 1], ours[:, 1], atol=1e-4)  # AlbumentationsX returns float32
    assert np.ptp(got[:, 0] - ours[:, 0]) < 1e-4  # the same points (x may differ by a pixel convention)


def test_cli_writes_a_file_and_refuses_an_unknown_target(tmp_path):
    out = tmp_path / "flip.yaml"
    r = CliRunner().invoke(main, ["scheme", "export", "--to", "ultralytics", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert yaml.safe_load(out.read_text())["flip_idx"][:3] == [16, 15, 14]
    r = CliRunner().invoke(main, ["scheme", "export", "--to", "kornia"])
    assert r.exit_code == 2 and "'kornia' is not one of" in r.output
