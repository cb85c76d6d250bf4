"""Training DataLoader throughput (decode + fused augmentation + collate) per worker count, next to
the model's own training-step rate, so one sees which one bounds training on this machine.

    python benchmarks/loader_throughput.py                      # ytf68/train beside the repo
    python benchmarks/loader_throughput.py --data DIR --size 128 --workers 0 1 2 4 --backbones resnet50 resnet18
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch

import augkit
from augkit.presets import face_augment_steps, preprocess_steps
from augkit.train import data as D
from augkit.models.losses import landmark_loss
from augkit.models.network import build_model

from harness import YTF68  # noqa: E402


def loader_rate(ds, workers, batch, n_batches, seed=0):
    sampler = D.EpochSampler(len(ds), shuffle=True, seed=seed)
    sampler.set_epoch(0)
    loader = D.make_loader(ds, batch, workers, sampler)
    t0 = time.perf_counter()  # worker start-up included: prefetched batches cannot flatter the rate
    it = iter(loader)
    n = 0
    for _, b in zip(range(n_batches), it):
        n += len(b["index"])
    dt = time.perf_counter() - t0
    del it, loader
    return n / dt


def step_rate(backbone, size, batch, steps, k=68):
    torch.manual_seed(0)
    model = build_model(backbone, k)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, size, size)
    t = torch.rand(batch, k, 2)
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        loss = landmark_loss(model(x).view(batch, k, 2), t, None, "smooth-l1")
        opt.zero_grad()
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(YTF68 / "train"), help="dataset (default ytf68/train; synthetic if absent)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=60, help="batches timed per worker count")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--backbones", nargs="+", default=["resnet50", "resnet18"])
    ap.add_argument("--steps", type=int, default=3, help="training steps timed per backbone")
    a = ap.parse_args(argv)

    if os.path.exists(os.path.join(a.data, "landmarks.csv")) or os.path.isfile(a.data):
        from augkit.data import read_dataset
        table = read_dataset(a.data)
        src, what = D.FileSource(table), f"{a.data} ({len(table)} images, JPEG decode)"
    else:
        from augkit.data.synthetic import SyntheticFaces
        src, what = D.SynthSource(SyntheticFaces(2000)), "synthetic demo faces (rendered on the fly)"
    pipe = augkit.Compose(preprocess_steps(a.size) + face_augment_steps(), scheme="ibug68")
    ds = D.LandmarkDataset(src, pipe, seed=0, train=True)
    print(f"augkit loader throughput: {what}; input {a.size}px, batch {a.batch}; "
          f"{os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
          f"{platform.processor() or platform.machine()}")
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print()
    print("| DataLoader workers | images/s (decode + fused aug + collate) |")
    print("|---:|---:|")
    for w in a.workers:
        r = loader_rate(ds, w, a.batch, a.batches)
        print(f"| {w} | {r:.0f} |", flush=True)
    print()
    print(f"| model (train step, CPU, batch {a.batch}) | input | images/s |")
    print("|---|---:|---:|")
    for bb in a.backbones:
        r = step_rate(bb, a.size, a.batch, a.steps)
        print(f"| {bb} | {a.size} | {r:.1f} |", flush=True)


if __name__ == "__main__":
    main()
