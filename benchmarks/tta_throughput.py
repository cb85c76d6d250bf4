"""TTA throughput: all views of a batch stacked into one forward (augkit.tta) versus one forward per
view (the way ttach does it), same model, same views, same images, in one run.

    python benchmarks/tta_throughput.py [--checkpoint runs/x/best.pt | --backbone resnet18 --size 128]
                                        [--tta flip-rot] [--images 48] [--batch 1 8] [--repeats 3]

ttach style: for each batch of ``--batch`` images, one forward of ``--batch`` per view.
augkit.tta: the same batch's ``views x batch`` inputs in one forward (``--max-batch`` = views x batch).
Both include the preprocessing, the view warps and the exact inverses; images are decoded once
beforehand. Prints img/s (original images per second, all views done) and the ratio, on the CPU
and, when torch sees one, on the GPU.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from harness import YTF68  # noqa: E402

DATA = YTF68 / "test" / "images"


def _images(n, seed=0):
    from augkit.io import read_image
    if DATA.is_dir():
        names = sorted(os.listdir(DATA))[:n]
        return [read_image(DATA / f) for f in names], f"{len(names)} ytf68/test images"
    rng = np.random.default_rng(seed)
    return [(rng.random((180, 200, 3)) * 255).astype(np.uint8) for _ in range(n)], f"{n} random 200x180 images"


def _model(args, device):
    import torch  # noqa: F401
    if args.checkpoint:
        from augkit.models.checkpoint import load_model
        return load_model(args.checkpoint, device=device), f"checkpoint {args.checkpoint}"
    import augkit as ak
    from augkit.presets import preprocess_steps
    from augkit.models.checkpoint import LandmarkModel
    from augkit.models.network import build_model
    net = build_model(args.backbone, 68).eval().to(device)
    pre = ak.Compose(preprocess_steps(args.size), scheme="ibug68")
    return (LandmarkModel(net, pre, ak.get_scheme("ibug68"), (args.size, args.size), torch.device(device), 68),
            f"{args.backbone} (random weights) at {args.size}x{args.size}")


def run(device, args, images, b):
    import torch

    from augkit.tta import TTAPredictor, get_spec
    model, what = _model(args, device)
    spec = get_spec(args.tta)
    v = len(spec.views)
    stacked = TTAPredictor(model, spec, max_batch=b * v, stacked=True)
    per_view = TTAPredictor(model, spec, max_batch=b, stacked=False)

    def go(pred):
        out = []
        for s in range(0, len(images), b):       # the same outer batches for both
            out.append(pred.predict(images[s:s + b]).points)
        if device != "cpu":
            torch.cuda.synchronize()
        return np.concatenate(out)

    go(stacked), go(per_view)  # warm-up, and the number of forwards of one pass
    calls = {"stacked": stacked.calls, "per_view": per_view.calls}
    times = {"stacked": [], "per_view": []}
    for _ in range(args.repeats):
        for name, pred in (("per_view", per_view), ("stacked", stacked)):
            t = time.perf_counter()
            res = go(pred)
            times[name].append(time.perf_counter() - t)
            if name == "stacked":
                ref = res
            else:
                other = res
    diff = float(np.abs(ref - other).max())
    best = {k: min(x) for k, x in times.items()}
    ips = {k: len(images) / t for k, t in best.items()}
    print(f"[{device}] {what}; {spec.name}: {v} views; {len(images)} images in batches of {b}; "
          f"torch threads {torch.get_num_threads()}")
    print(f"  one forward per view (ttach style): {ips['per_view']:8.1f} img/s  ({calls['per_view']} forwards of <= {b})")
    print(f"  all views stacked (augkit.tta)    : {ips['stacked']:8.1f} img/s  ({calls['stacked']} forwards of <= {b * v})")
    print(f"  ratio stacked / per-view          : {ips['stacked'] / ips['per_view']:8.2f}x   "
          f"(max |difference| of the merged points {diff:.2e} px)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--tta", default="flip-rot")
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8],
                    help="images per outer batch (ttach: one forward of this many per view); several allowed")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    images, what = _images(args.images)
    print(f"images: {what}")
    for b in args.batch:
        run("cpu", args, images, b)
    if torch.cuda.is_available():
        for b in args.batch:
            run("cuda", args, images, b)
    else:
        print("[cuda] no GPU visible to torch here: GPU numbers not measured")


if __name__ == "__main__":
    main()
