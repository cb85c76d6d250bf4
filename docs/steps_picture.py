"""One face through each step of issue 27's set, points drawn: ``docs/images/new_steps.png``.

    python docs/steps_picture.py                 # the built-in synthetic demo face (no data needed)
    python docs/steps_picture.py --data DIR      # the first image of a dataset instead (not for the repo)

Each tile is ``Compose([step], scheme="ibug68")`` on the same face and seed, so it shows what the
step does and that the points go where the pixels went (only ``Perspective`` moves them).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np

import augkit as ak
from augkit.data import grid_samples
from augkit.show import draw_points

ROOT = Path(__file__).resolve().parent


def steps(patch_folder: str | None) -> list:
    return [
        ("input", None),
        ("Perspective(yaw=0.3)", ak.Perspective(yaw=0.3)),
        ("Perspective(jitter=0.1)", ak.Perspective(jitter=0.1)),
        ("Caption(over landmarks)", ak.Caption(position="landmarks", height=0.08, outline=0.12)),
        ("Caption(Cyrillic)", ak.Caption(vocabulary=["ПРЯМОЙ ЭФИР", "ЖИЗНЬ ЩЕДРО", "ЮБИЛЕЙ ФИЛЬМ"],
                                         height=0.07, lines=2, words=1, angle=-8, color=(255, 255, 0),
                                         outline=0.1, outline_color=(0, 0, 0), font="duplex")),
        ("Downscale(0.25)", ak.Downscale(scale=0.25)),
        ("Sharpen(1.5)", ak.Sharpen(amount=1.5)),
        ("ColorJitter(hue 40)", ak.ColorJitter(hue=40, saturation=1.4, value=1.1)),
        ("CLAHE(4)", ak.CLAHE(clip_limit=4.0)),
        ("CoarseDropout(6)", ak.CoarseDropout(n=6, fill="random")),
        ("RandomPatch", ak.RandomPatch(source=patch_folder, n=2, area=0.06)),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="a dataset folder (default: the synthetic demo faces)")
    ap.add_argument("--size", type=int, default=192, help="tile size")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "images" / "new_steps.png"))
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    (image, points), (other, _) = list(grid_samples(a.data, 2, rng))
    prep = ak.Compose([ak.CropBox(margin=0.25, square=True), ak.Resize(a.size, a.size)], scheme="ibug68")
    face = prep(image, points)
    # RandomPatch's folder: one other face of the same source, written to a temporary folder
    import tempfile
    with tempfile.TemporaryDirectory() as patches:
        cv2.imwrite(os.path.join(patches, "other.png"), cv2.cvtColor(other, cv2.COLOR_RGB2BGR))
        tiles = []
        for name, step in steps(patches):
            if step is None:
                img, pts = face.image, face.points
            else:
                out = ak.Compose([step], scheme="ibug68")(face.image, face.points, rng=np.random.default_rng(a.seed))
                img, pts = out.image, out.points
            tile = draw_points(img, pts, scheme=ak.IBUG68, radius=2)
            tile = cv2.copyMakeBorder(tile, 0, 22, 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
            cv2.putText(tile, name, (4, a.size + 15), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
            tiles.append(tile)
    cols = 4
    while len(tiles) % cols:
        tiles.append(np.full_like(tiles[0], 255))
    grid = np.vstack([np.hstack(tiles[r * cols:(r + 1) * cols]) for r in range(len(tiles) // cols)])
    ok = cv2.imwrite(a.out, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        raise SystemExit(f"could not write {a.out}")
    print(f"wrote {a.out} ({grid.shape[1]}x{grid.shape[0]})")


if __name__ == "__main__":
    main()
