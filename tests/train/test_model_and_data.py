"""Model head and coordinate convention, masked/trimmed losses, preprocessing inverse, dataset
seeding, splits, LR schedules, and the import-light contract."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import augkit
from augkit.presets import face_augment_steps, preprocess_steps
from augkit.train import data as D
from augkit.models.losses import landmark_loss
from augkit.train.loop import LRSchedule
from augkit.models.network import build_model, decode, encode
from augkit.data.synthetic import SyntheticFaces, make_face


def test_import_augkit_and_train_cli_stay_light():
    code = ("import sys, augkit, augkit.train, augkit.cli.train, augkit.data, augkit.data.synthetic;"
            "bad=[m for m in ('torch','torchvision','albumentations') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-c", "import sys, augkit; sys.exit('pandas' in sys.modules)"])
    assert r.returncode == 0


def test_decode_encode_convention():
    out = torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.5, 0.25]])
    px = decode(out, (40, 80))  # h=40, w=80
    assert px.shape == (1, 3, 2)
    np.testing.assert_allclose(px[0].numpy(), [[-0.5, -0.5], [79.5, 39.5], [39.5, 9.5]])
    np.testing.assert_allclose(encode(px, (40, 80)).reshape(1, -1).numpy(), out.numpy(), atol=1e-6)


@pytest.mark.parametrize("backbone", ["tiny", "resnet18", "mobilenet_v3_small"])
def test_build_model_head_and_mean_shape_init(backbone):
    torch.manual_seed(0)
    mean = np.random.default_rng(0).uniform(0.2, 0.8, (5, 2))
    m = build_model(backbone, 5, mean_shape=mean).eval()
    with torch.no_grad():
        y = m(torch.zeros(2, 3, 64, 64))
    assert y.shape == (2, 10)
    # head weights start near zero, bias at the mean shape: step 0 predicts ~ the mean shape
    np.testing.assert_allclose(y[0].numpy(), mean.reshape(-1), atol=0.05)


def test_unknown_backbone_and_weights_file(tmp_path):
    with pytest.raises(ValueError, match="unknown backbone"):
        build_model("resnet_fifty", 5)
    src = build_model("tiny", 5)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    dst = build_model("tiny", 7, weights=str(tmp_path / "w.pt"))  # head shape differs: left out
    torch.testing.assert_close(dst.features[0].weight, src.features[0].weight)
    assert dst.fc.weight.shape == (14, src.fc.in_features)


def test_masked_loss_ignores_points_outside_the_crop():
    torch.manual_seed(0)
    pred = torch.rand(3, 4, 2, requires_grad=True)
    target = torch.rand(3, 4, 2)
    mask = torch.tensor([[1, 1, 0, 1], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
    wild = target.clone()
    wild[0, 2] = 1e6       # a point far outside: masked, so it must not matter
    wild[1, 3] = float("nan")  # NaN target: masked as well
    loss = landmark_loss(pred, wild, mask, "mse")
    loss.backward()
    # by hand: per-sample mean over the kept points, sample 2 (nothing visible) left out
    d = ((pred.detach() - target) ** 2).sum(-1)
    s0 = d[0, [0, 1, 3]].mean()
    s1 = d[1, [0, 1, 2]].mean()
    assert torch.isclose(loss, (s0 + s1) / 2)
    assert torch.all(pred.grad[0, 2] == 0) and torch.all(pred.grad[1, 3] == 0) and torch.all(pred.grad[2] == 0)
    assert torch.isfinite(pred.grad).all()


@pytest.mark.parametrize("kind", ["mse", "l1", "smooth-l1", "wing"])
def test_losses_zero_at_target_and_trim(kind):
    t = torch.rand(6, 5, 2)
    assert float(landmark_loss(t.clone(), t, None, kind)) == 0.0
    p = t + 0.01
    p[0] += 0.5  # one outlier sample
    full = landmark_loss(p, t, None, kind)
    trimmed = landmark_loss(p, t, None, kind, trim=0.2)  # drops floor(0.2 * 6) = 1 sample: the outlier
    clean = landmark_loss(p[1:], t[1:], None, kind)
    assert trimmed < full and torch.isclose(trimmed, clean)


def test_preprocess_inverse_maps_back_within_1e3_px():
    rng = np.random.default_rng(3)
    for mode in ("crop", "letterbox"):
        pipe = augkit.Compose(preprocess_steps(64, mode), scheme="ibug68")
        for _ in range(5):
            h, w = rng.integers(50, 300, 2)
            pts = np.column_stack([rng.uniform(0, w - 1, 68), rng.uniform(0, h - 1, 68)])
            res = pipe(np.zeros((h, w, 3), np.uint8), pts)
            back = res.invert(res.points)
            assert np.abs(back - pts).max() < 1e-3
            # the batch inverse used in validation agrees, and so does the pixel-free matrix
            m, size = D.preprocess_matrix(pipe, (w, h))
            np.testing.assert_allclose(m, res.matrix, atol=1e-12)
            assert size == (64, 64)
            back2 = D.invert_batch(res.matrix[None], res.points[None])[0]
            assert np.abs(back2 - pts).max() < 1e-3
            # model output convention: encode -> decode -> invert returns the original pixels
            model_out = encode(torch.from_numpy(res.points)[None], (64, 64)).reshape(1, -1)
            again = res.invert(decode(model_out.double(), (64, 64))[0].numpy())
            assert np.abs(again - pts).max() < 1e-3


def test_train_pipeline_with_flip_inverts_with_the_scheme():
    img, pts = make_face(np.random.default_rng(1))
    pipe = augkit.Compose(preprocess_steps(64) + face_augment_steps(), scheme="ibug68")
    flipped = 0
    for s in range(12):
        res = pipe(img, pts, rng=np.random.default_rng(s))
        flipped += res.record["flips"] % 2
        assert np.abs(res.invert(res.points) - pts).max() < 1e-3
    assert flipped > 0


def _dataset(n=12, seed=5):
    faces = SyntheticFaces(n, seed=1)
    pipe = augkit.Compose(preprocess_steps(48) + face_augment_steps(), scheme="ibug68")
    return D.LandmarkDataset(D.SynthSource(faces), pipe, seed=seed, train=True)


def test_dataset_sample_is_a_function_of_seed_epoch_index():
    ds = _dataset()
    a, b = ds[(0, 3)], ds[(0, 3)]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["target"], b["target"])
    c = ds[(1, 3)]
    assert not torch.equal(a["image"], c["image"])
    other = _dataset(seed=6)[(0, 3)]
    assert not torch.equal(a["image"], other["image"])
    assert a["image"].dtype == torch.uint8 and a["image"].shape == (48, 48, 3)
    assert a["target"].shape == (68, 2) and a["mask"].dtype == torch.bool
    # targets are normalised model-frame points: decode and invert -> the original points
    px = decode(a["target"][None].double().reshape(1, -1), (48, 48))[0].numpy()
    m = a["matrix"].numpy()
    if a["flipped"]:
        px = px[augkit.IBUG68.perm]
    back = D.invert_batch(m[None], px[None])[0]
    ok = a["mask"].numpy()
    assert np.abs(back[ok] - ds.source.points[3][ok]).max() < 1e-3


def test_loader_batches_identical_across_worker_counts():
    ds = _dataset(n=16)
    batches = []
    for workers in (0, 2):
        sampler = D.EpochSampler(len(ds), shuffle=True, seed=0)
        sampler.set_epoch(2)
        loader = D.make_loader(ds, 4, workers, sampler)
        batches.append([b for _, b in zip(range(2), loader)])
        del loader
    for x, y in zip(*batches):
        assert torch.equal(x["index"], y["index"]) and torch.equal(x["image"], y["image"])
        assert torch.equal(x["target"], y["target"])


def test_epoch_sampler_shards_and_resumes():
    s0, s1 = D.EpochSampler(10, world=2, rank=0, seed=1), D.EpochSampler(10, world=2, rank=1, seed=1)
    for s in (s0, s1):
        s.set_epoch(3)
    a, b = [i for _, i in s0], [i for _, i in s1]
    assert len(a) == len(b) == 5 and sorted(a + b) == list(range(10))
    assert all(e == 3 for e, _ in s0)
    s0.set_epoch(3, start=2)
    assert [i for _, i in s0] == a[2:] and len(s0) == 3


def test_person_split_keeps_people_apart():
    files = [f"/d/{p}_{i}_{x}.jpg" for p in ("Abdullah_Gul", "Al_Gore", "Bo_Di", "Cy_Ng", "Dee") for i in range(4)
             for x in "ab"]
    tr, va = D.split_indices(files, 0.3, seed=0, group_regex="person")
    people = lambda idx: {D.person_key(files[i], D.PERSON_REGEX) for i in idx}  # noqa: E731
    assert people(tr).isdisjoint(people(va)) and len(va) >= 0.3 * len(files)
    assert "Abdullah_Gul" in people(tr) | people(va)
    tr2, va2 = D.split_indices(files, 0.3, seed=0, group_regex=r"^(.*)_\d+_[a-z]\.jpg$")
    assert people(tr2).isdisjoint(people(va2))
    with pytest.raises(ValueError, match="matches none"):
        D.split_indices(files, 0.3, seed=0, group_regex=r"^zzz(\d+)$")
    tr3, va3 = D.split_indices(files, 0.25, seed=0)
    assert len(va3) == 10 and len(np.intersect1d(tr3, va3)) == 0


def test_lr_schedules():
    cos = LRSchedule("cosine", 1.0, steps_per_epoch=10, epochs=4, warmup_epochs=1, restart_epochs=None)
    assert cos.lr(0) == pytest.approx(0.1) and cos.lr(9) == pytest.approx(1.0)
    assert cos.lr(10) == pytest.approx(1.0) and cos.lr(39) < 0.05
    rs = LRSchedule("cosine", 1.0, 10, 4, 0, restart_epochs=2)
    assert rs.lr(19) < 0.05 and rs.lr(20) == pytest.approx(1.0)
    oc = LRSchedule("onecycle", 1.0, 10, 4)
    lrs = [oc.lr(s) for s in range(40)]
    assert lrs[0] == pytest.approx(1 / 25, rel=1e-2) and max(lrs) == pytest.approx(1.0, abs=0.01) and lrs[-1] < 0.01
    pl = LRSchedule("plateau", 1.0, 10, 10, patience=1)
    for v in (1.0, 0.5, 0.6, 0.7):
        pl.epoch_end(v)
    assert pl.lr(50) == pytest.approx(0.5)
    st = pl.state_dict()
    p2 = LRSchedule("plateau", 1.0, 10, 10, patience=1)
    p2.load_state_dict(st)
    assert p2.lr(50) == pytest.approx(0.5) and math.isfinite(p2.best)


def test_points_outside_the_crop_are_masked_not_clamped():
    # a wide image: the centre crop cuts off its left and right thirds
    img = np.zeros((60, 180, 3), np.uint8)
    pts = np.tile([[90.0, 30.0]], (68, 1))
    pts[0] = [5.0, 30.0]     # left of the crop
    pts[16] = [175.0, 30.0]  # right of the crop
    pipe = augkit.Compose(preprocess_steps(60), scheme="ibug68")
    ds = D.LandmarkDataset(D.FileSource(type("T", (), {"files": ["x"], "points": pts[None], "sizes": None})()),
                           pipe, train=False)
    ds.source.image = lambda i: img
    s = ds[0]
    assert not s["mask"][0] and not s["mask"][16] and s["mask"][1:16].all()
    # the target keeps the true (outside) position: not clamped into [0, 1]
    assert s["target"][0, 0] < 0 and s["target"][16, 0] > 1
