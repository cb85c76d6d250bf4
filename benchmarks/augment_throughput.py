"""Augmentation throughput: augkit vs albumentations vs the bare OpenCV floor, one thread each.

The same training pipeline in all three: affine (rotate, scale, translate, shear) + horizontal
flip (p=0.5) + resize to the model size + brightness/contrast + Gaussian blur, 68 points carried,
on real ytf68 frames held in memory. The floor is what a hand-written fused pass costs: the same
parameter draws, one matrix, one ``cv2.warpAffine`` straight to the output size, one LUT, one
Gaussian blur and the point product, no bookkeeping at all. It aliases where the warp shrinks
below 1/2; the fair floor does the image work augkit does, its anti-alias pre-shrink included
(``augkit.functional.warp``), still without sampling, steps or record.

    python benchmarks/augment_throughput.py [--data ../shared/data/ytf68] [--images 300] [--rounds 5]
    python benchmarks/augment_throughput.py --steps-only      # the second table alone: one row per step

The second table puts each step of issue 27 beside its albumentations counterpart on the same
128 px face crops, 68 points carried by both (``A.Compose`` with ``KeypointParams``), and the full
pipeline with a perspective step (augkit: one ``warpPerspective``; albumentations: ``Affine`` then
``Perspective``, two warps, plus the resize). Counterparts do similar, not identical, work:
``Sharpen`` is an unsharp mask here and a 3x3 kernel there; ``Downscale`` is set to augkit's
area-down, bilinear-up pair on both sides (albumentations' default, nearest both ways, is cheaper
and blockier); augkit's ``ColorJitter`` is albumentations'
``HueSaturationValue`` (an HSV LUT: factors here, shifts there); ``Caption`` is set against
``TextImage`` (a TrueType font through PIL, given the text and box per call), where a DejaVu font is
installed; ``RandomPatch`` has no counterpart.
    python benchmarks/augment_throughput.py --other-python ../venv-cv5/bin/python --other-python ../venv-albux/bin/python

albumentations 2.0.x and its maintained successor AlbumentationsX both import as ``albumentations``
and cannot share an environment (AlbumentationsX 2.4+ needs OpenCV 5); ``--other-python`` runs the
same measurement in a second environment's interpreter as well and prints both in one table, each
row naming its albumentations and OpenCV. AlbumentationsX's renamed arguments are handled
(``harness.albu``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import subprocess
import tempfile
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from harness import YTF68, albu, albumentations_name  # noqa: E402

import augkit as ak  # noqa: E402
from augkit.functional import warp  # noqa: E402
from augkit.io import read_image  # noqa: E402

ROT, SCALE, SHIFT, SHEAR = (-20.0, 20.0), (0.9, 1.1), (-0.05, 0.05), (-5.0, 5.0)
BRIGHT, CONTRAST, SIGMA = (-0.2, 0.2), (0.8, 1.2), (0.5, 1.5)


def load(data: Path, n: int):
    import pandas as pd
    table = pd.read_csv(data / "train" / "landmarks.csv", sep="\t", nrows=n)
    images = [read_image(data / "train" / "images" / f) for f in table["file_name"]]
    points = table.iloc[:, 1:].to_numpy(np.float64).reshape(len(table), -1, 2)
    return images, points


def augkit_pipe(size: int) -> ak.Compose:
    return ak.Compose([
        ak.Affine(rotate=ROT, scale=SCALE, translate=SHIFT, shear=SHEAR),
        ak.HFlip(p=0.5),
        ak.Resize(size, size),
        ak.BrightnessContrast(brightness=BRIGHT, contrast=CONTRAST),
        ak.Blur(sigma=SIGMA),
    ], scheme="ibug68")


def run_augkit(images, points, size, rng):
    pipe = augkit_pipe(size)
    for img, pts in zip(images, points):
        pipe(img, pts, rng=rng)


def run_albumentations(images, points, size, rng):
    import albumentations as A
    extra = {"telemetry": False} if "telemetry" in inspect.signature(A.Compose.__init__).parameters else {}
    pipe = A.Compose([
        A.Affine(rotate=ROT, scale=SCALE, translate_percent=SHIFT, shear=SHEAR, p=1.0),
        A.HorizontalFlip(p=0.5),
        A.Resize(size, size),
        albu(A.RandomBrightnessContrast, brightness_limit=BRIGHT, contrast_limit=(CONTRAST[0] - 1, CONTRAST[1] - 1),
             p=1.0),
        albu(A.GaussianBlur, sigma_limit=SIGMA, blur_limit=(0, 0), p=1.0),  # kernel size from sigma
    ], keypoint_params=albu(A.KeypointParams, format="xy", remove_invisible=False), seed=int(rng.integers(2**31)),
        **extra)
    for img, pts in zip(images, points):
        pipe(image=img, keypoints=pts)


def run_fair_floor(images, points, size, rng):
    """The floor plus the anti-alias pre-shrink augkit does (``augkit.functional.warp``): the same
    image work as augkit, without its sampling, steps and record."""
    run_floor(images, points, size, rng, antialias=True)


def run_floor(images, points, size, rng, antialias=False):
    """The hand-written fused pass: the cost floor for this pipeline."""
    perm = ak.IBUG68.perm
    ramp = np.arange(256, dtype=np.float32)
    for img, pts in zip(images, points):
        h, w = img.shape[:2]
        u = rng.random(9)
        rot = math.radians(ROT[0] + (ROT[1] - ROT[0]) * u[0])
        s = SCALE[0] + (SCALE[1] - SCALE[0]) * u[1]
        tx = (SHIFT[0] + (SHIFT[1] - SHIFT[0]) * u[2]) * w
        ty = (SHIFT[0] + (SHIFT[1] - SHIFT[0]) * u[3]) * h
        k = math.tan(math.radians(SHEAR[0] + (SHEAR[1] - SHEAR[0]) * u[4]))
        flip = u[5] < 0.5
        c, sn = math.cos(rot) * s, math.sin(rot) * s
        lin = np.array([[c, c * k + sn], [-sn, -sn * k + c]])
        centre = np.array([(w - 1) / 2, (h - 1) / 2])
        m = np.empty((2, 3))
        m[:, :2] = lin
        m[:, 2] = centre + (tx, ty) - lin @ centre
        if flip:
            m[0] = -m[0]
            m[0, 2] += w - 1
        sx, sy = size / w, size / h
        m[0] = m[0] * sx
        m[1] = m[1] * sy
        m[0, 2] += 0.5 * sx - 0.5
        m[1, 2] += 0.5 * sy - 0.5
        if antialias:  # the same anti-alias pre-shrink as augkit (cut the window read, halve with INTER_AREA)
            out = warp(img, np.vstack([m, (0.0, 0.0, 1.0)]), (size, size))
        else:
            out = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        con = CONTRAST[0] + (CONTRAST[1] - CONTRAST[0]) * u[6]
        bri = (BRIGHT[0] + (BRIGHT[1] - BRIGHT[0]) * u[7]) * 255
        table = np.clip(ramp * con + (127.5 * (1 - con) + bri), 0, 255).round().astype(np.uint8)
        out = cv2.LUT(out, table)
        out = cv2.GaussianBlur(out, (0, 0), SIGMA[0] + (SIGMA[1] - SIGMA[0]) * u[8])
        p = pts @ m[:, :2].T + m[:, 2]
        if flip:
            p = p[perm]


def measure(fn, images, points, size, rounds):
    best = 0.0
    for r in range(rounds):
        rng = np.random.default_rng(r)
        t = time.perf_counter()
        fn(images, points, size, rng)
        best = max(best, len(images) / (time.perf_counter() - t))
    return best


def measure_here(args) -> list[dict]:
    """The rows of this environment: floor, augkit and albumentations img/s per size, interleaved."""
    cv2.setNumThreads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    images, points = load(Path(args.data), args.images)
    sides = np.array([im.shape[:2] for im in images])
    rows = []
    for size in args.sizes:
        rates = {}
        for name, fn in (("floor", run_floor), ("fair", run_fair_floor), ("augkit", run_augkit),
                         ("albu", run_albumentations)):
            rates[name] = measure(fn, images, points, size, args.rounds)
        rows.append({"env": f"{albumentations_name()}, OpenCV {cv2.__version__}", "size": size, **rates,
                     "frames": f"{len(images)} ytf68 frames in memory (median {int(np.median(sides[:, 1]))}x"
                               f"{int(np.median(sides[:, 0]))} px)"})
    return rows


FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def step_pairs(patch_folder: str) -> list:
    """(name, augkit steps, albumentations transforms or None, albumentations call extras)."""
    import albumentations as A
    geo = [ak.Affine(rotate=ROT, scale=SCALE, translate=SHIFT, shear=SHEAR), ak.HFlip(p=0.5)]
    photo = [ak.BrightnessContrast(brightness=BRIGHT, contrast=CONTRAST), ak.Blur(sigma=SIGMA)]
    a_geo = [A.Affine(rotate=ROT, scale=SCALE, translate_percent=SHIFT, shear=SHEAR, p=1.0), A.HorizontalFlip(p=0.5)]
    a_photo = [albu(A.RandomBrightnessContrast, brightness_limit=BRIGHT,
                    contrast_limit=(CONTRAST[0] - 1, CONTRAST[1] - 1), p=1.0),
               albu(A.GaussianBlur, sigma_limit=SIGMA, blur_limit=(0, 0), p=1.0)]
    text = {"textimage_metadata": {"bbox": (0.1, 0.6, 0.9, 0.8), "text": "BREAKING NEWS"}}
    return [
        ("Perspective (corner jitter 0.05)", [ak.Perspective(jitter=0.05)],
         [albu(A.Perspective, scale=(0.0, 0.05), keep_size=True, p=1.0)], {}),
        ("Downscale (0.25-0.5)", [ak.Downscale(scale=(0.25, 0.5))],
         [albu(A.Downscale, scale_range=(0.25, 0.5), interpolation_pair={"downscale": cv2.INTER_AREA,
                                                                          "upscale": cv2.INTER_LINEAR}, p=1.0)], {}),
        ("Sharpen", [ak.Sharpen(amount=(0.3, 1.0))], [albu(A.Sharpen, alpha=(0.2, 0.5), p=1.0)], {}),
        ("ColorJitter (HSV)", [ak.ColorJitter(hue=(-10, 10), saturation=(0.7, 1.3), value=(0.8, 1.2))],
         [albu(A.HueSaturationValue, hue_shift_limit=5, sat_shift_limit=30, val_shift_limit=20, p=1.0)], {}),
        ("CLAHE", [ak.CLAHE(clip_limit=(1.0, 4.0))], [albu(A.CLAHE, clip_limit=(1.0, 4.0), p=1.0)], {}),
        ("CoarseDropout (1-8 holes)", [ak.CoarseDropout(n=(1, 8), height=(0.05, 0.15), width=(0.05, 0.15))],
         [albu(A.CoarseDropout, num_holes_range=(1, 8), hole_height_range=(0.05, 0.15),
               hole_width_range=(0.05, 0.15), p=1.0)], {}),
        ("Caption", [ak.Caption(lines=1, words=2)],
         [albu(A.TextImage, font_path=FONT, p=1.0)] if os.path.isfile(FONT) else None, text),
        ("RandomPatch (from a folder)", [ak.RandomPatch(source=patch_folder, area=(0.02, 0.1))], None, {}),
        ("full pipeline + Perspective", geo[:1] + [ak.Perspective(jitter=0.05)] + geo[1:] + [ak.Resize(128, 128)]
         + photo, a_geo[:1] + [albu(A.Perspective, scale=(0.0, 0.05), keep_size=True, p=1.0)] + a_geo[1:]
         + [A.Resize(128, 128)] + a_photo, {}),
    ]


def measure_steps(args) -> tuple[list, str]:
    """img/s of each step (augkit, albumentations), interleaved per round, best of the rounds."""
    import albumentations as A
    cv2.setNumThreads(1)
    images, points = load(Path(args.data), args.step_images)
    crop = ak.Compose([ak.CropBox(margin=0.2, square=True), ak.Resize(128, 128)], scheme="ibug68")
    crops = [crop(im, p) for im, p in zip(images, points)]
    faces, face_pts = [c.image for c in crops], [c.points for c in crops]
    extra = {"telemetry": False} if "telemetry" in inspect.signature(A.Compose.__init__).parameters else {}
    rows = []
    with tempfile.TemporaryDirectory() as patches:
        for i, im in enumerate(images[:20]):
            cv2.imwrite(os.path.join(patches, f"{i}.jpg"), im)
        for name, ak_steps, a_steps, a_kw in step_pairs(patches):
            full = name.startswith("full")
            src, src_pts = (images, points) if full else (faces, face_pts)
            pipe = ak.Compose(ak_steps, scheme="ibug68")
            a_pipe = None if a_steps is None else A.Compose(
                a_steps, keypoint_params=albu(A.KeypointParams, format="xy", remove_invisible=False), seed=0, **extra)
            best_a = best_b = 0.0
            for r in range(args.rounds):
                rng = np.random.default_rng(r)
                t = time.perf_counter()
                for im, p in zip(src, src_pts):
                    pipe(im, p, rng=rng)
                best_a = max(best_a, len(src) / (time.perf_counter() - t))
                if a_pipe is not None:
                    t = time.perf_counter()
                    for im, p in zip(src, src_pts):
                        a_pipe(image=im, keypoints=p, **a_kw)
                    best_b = max(best_b, len(src) / (time.perf_counter() - t))
            rows.append((name, best_a, best_b if a_pipe is not None else None))
    what = (f"{len(images)} ytf68 frames: the steps on their 128 px face crops, the full pipeline on the frames "
            f"themselves; {albumentations_name()}, OpenCV {cv2.__version__}; one thread; best of {args.rounds} rounds")
    return rows, what


def print_steps(rows, what: str) -> None:
    print(what)
    print()
    print("| step | augkit img/s | albumentations img/s | augkit / albumentations |")
    print("|---|---:|---:|---:|")
    for name, a, b in rows:
        if b is None:
            print(f"| {name} | {a:,.0f} | (no counterpart) | |")
        else:
            print(f"| {name} | {a:,.0f} | {b:,.0f} | {a / b:.2f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(YTF68))
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    ap.add_argument("--other-python", action="append", default=[],
                    help="another environment's python (e.g. AlbumentationsX + OpenCV 5): measured there too "
                         "(repeatable)")
    ap.add_argument("--json", default=None, help=argparse.SUPPRESS)  # rows for the --other-python caller
    ap.add_argument("--step-images", type=int, default=200, help="frames for the per-step table")
    ap.add_argument("--steps-only", action="store_true", help="print the per-step table only")
    args = ap.parse_args()
    if args.steps_only:
        print_steps(*measure_steps(args))
        return
    rows = measure_here(args)
    if args.json:
        Path(args.json).write_text(json.dumps(rows))
        return
    for python in args.other_python:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "rows.json"
            subprocess.run([python, __file__, "--data", args.data, "--images", str(args.images), "--rounds",
                            str(args.rounds), "--sizes", *map(str, args.sizes), "--json", str(out)], check=True)
            rows += json.loads(out.read_text())
    print(f"{rows[0]['frames']}, 68 points each; one thread; best of {args.rounds} rounds; each row's three "
          "columns measured back to back in one environment")
    print()
    print("| albumentations, OpenCV | size | floor img/s | fair floor img/s | augkit img/s | albumentations img/s | "
          "augkit / floor | augkit / fair floor | augkit / albumentations |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        f, ff, a, b = r["floor"], r["fair"], r["augkit"], r["albu"]
        print(f"| {r['env']} | {r['size']} | {f:,.0f} | {ff:,.0f} | {a:,.0f} | {b:,.0f} | {a / f:.2f} | {a / ff:.2f} | "
              f"{a / b:.2f} |")
    print()
    print_steps(*measure_steps(args))


if __name__ == "__main__":
    main()
