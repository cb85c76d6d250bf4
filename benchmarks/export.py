"""PyTorch on the CPU versus the same model exported to ONNX and run by ONNX Runtime on the CPU, in
one run: resnet18 and resnet50 (random weights: nothing is downloaded) at 128 and 224 px, batches
of 1 and 32 images, without TTA and with ``flip``.

    python benchmarks/export.py [--quick] [--threads N] [--repeats 3]

What is timed is what ``augkit predict`` does per image, through the same
:class:`augkit.tta.TTAPredictor` for both backends: the preprocessing and the view fused into one
warp of each original image, the forward (all views of a batch stacked: ``batch x views`` images
per call), the exact inverses and the merge. Only the forward differs: a
:class:`augkit.models.checkpoint.LandmarkModel` (PyTorch, float32) or an
:class:`augkit.tta.OnnxModel` (ONNX Runtime's CPU provider) of its ``augkit export`` graph. Both
get ``--threads`` intra-op threads (default: torch's own count). Images: 200x180 random RGB,
decoded once beforehand. img/s counts original images (all views done); the best of
``--repeats`` timed runs after one warm-up (fewer for the slowest cases, see ``_repeats``). The
last columns: the largest difference of the merged points between the two backends and the
largest point coordinate, in original pixels (random weights put points far outside the image, so
the difference is float32 rounding relative to that).

``--quick``: resnet18 at 128 px only, one repeat (a smoke test of the script).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from harness import print_table

BACKBONES = ("resnet18", "resnet50")
SIZES = (128, 224)
BATCHES = (1, 32)
TTAS = ("none", "flip")


def _models(backbone: str, size: int, threads: int):
    """(PyTorch LandmarkModel, OnnxModel) of one random-weight model, seconds the export took."""
    import torch

    import augkit as ak
    from augkit.models.checkpoint import LandmarkModel
    from augkit.models.network import build_model
    from augkit.models.onnx_export import ExportGraph, onnx_bytes
    from augkit.presets import preprocess_steps
    from augkit.tta import OnnxModel, get_spec
    from augkit.tta.export import describe
    torch.manual_seed(0)
    net = build_model(backbone, 68, input_size=(size, size)).eval()
    pre = ak.Compose(preprocess_steps(size), scheme="ibug68")
    model = LandmarkModel(net, pre, ak.get_scheme("ibug68"), (size, size), torch.device("cpu"), 68)
    t = time.perf_counter()
    data = onnx_bytes(ExportGraph.of(model), (size, size))
    took = time.perf_counter() - t
    onnx = OnnxModel(data, describe(model, get_spec("flip")), device="cpu", threads=threads)
    return model, onnx, took


def _repeats(args, backbone: str, size: int, batch: int) -> int:
    """The slowest cases (resnet50 at 224 px, 32 images) get 2 timed runs at most (the default run's budget)."""
    return min(args.repeats, 2) if (backbone, size, batch) == ("resnet50", 224, 32) else args.repeats


def _time(model, spec, images, batch: int, repeats: int):
    """(best img/s, merged points) of ``images`` in groups of ``batch`` through the TTA predictor."""
    from augkit.tta import TTAPredictor
    pred = TTAPredictor(model, spec, max_batch=batch * len(spec.views))
    pred.predict(images[:batch])             # warm-up (allocations, ONNX Runtime's first run)
    best, points = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = [pred.predict(images[s:s + batch]).points for s in range(0, len(images), batch)]
        best = min(best, time.perf_counter() - t)
        points = np.concatenate(out)
    return len(images) / best, points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="resnet18 at 128 px, one repeat: a smoke test")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads of both (default: torch's count)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per case (the best is kept)")
    ap.add_argument("--images", type=int, default=32, help="images per case (batch 1: a quarter, at least 4)")
    args = ap.parse_args()
    import onnxruntime
    import torch

    from augkit.tta import get_spec
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    backbones, sizes = (("resnet18",), (128,)) if args.quick else (BACKBONES, SIZES)
    if args.quick:
        args.repeats = 1
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (180, 200, 3), dtype=np.uint8) for _ in range(args.images)]
    print(f"# PyTorch {torch.__version__} vs ONNX Runtime {onnxruntime.__version__}, CPU, {threads} thread(s) each; "
          f"{platform.processor() or platform.machine()}; 200x180 random images, random-weight models, 68 points")
    rows, exports = [], []
    for backbone in backbones:
        for size in sizes:
            model, onnx, took = _models(backbone, size, threads)
            exports.append(f"{backbone}@{size}: {took:.1f} s")
            for batch in BATCHES:
                n = len(images) if batch > 1 else max(4, len(images) // 4)
                reps = _repeats(args, backbone, size, batch)
                for tta in TTAS:
                    spec = get_spec(tta)
                    t_pt, p_pt = _time(model, spec, images[:n], batch, reps)
                    t_ox, p_ox = _time(onnx, spec, images[:n], batch, reps)
                    rows.append([backbone, size, batch, tta, f"{t_pt:.1f}", f"{t_ox:.1f}", f"{t_ox / t_pt:.2f}",
                                 f"{np.abs(p_pt - p_ox).max():.1e}", f"{np.abs(p_pt).max():.0f}"])
                    print(" ".join(str(c) for c in rows[-1]), flush=True)
    print()
    print_table(["backbone", "px", "batch", "TTA", "PyTorch img/s", "ONNX Runtime img/s", "ONNX / PyTorch",
                 "largest Δ px", "largest coordinate px"], rows)
    print(f"\nexport (torch.onnx.export, dynamo): {'; '.join(exports)}")


if __name__ == "__main__":
    main()
