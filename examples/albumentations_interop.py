"""augkit geometry + albumentations photometry in one pipeline.

Any image-only albumentations transform runs as an augkit step through ``ak.Photometric``: it
leaves the points alone and takes its seed from augkit's generator, so replay stays exact.
Geometric albumentations transforms are refused with the augkit step to use instead.

    python examples/albumentations_interop.py --data ../shared/data/ytf68/train --out interop.png
"""

import argparse

import albumentations as A
import cv2
import numpy as np
import pandas as pd

import augkit as ak
from augkit.io import read_image
from augkit.show import draw_points


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/ytf68/train")
    ap.add_argument("--out", default="interop.png")
    args = ap.parse_args()
    row = pd.read_csv(f"{args.data}/landmarks.csv", sep="\t", nrows=1).iloc[0]
    image = read_image(f"{args.data}/images/{row['file_name']}")
    points = row.iloc[1:].to_numpy(np.float64).reshape(-1, 2)

    pipe = ak.Compose([
        ak.ScaleMinSide(160), ak.CenterCrop(160, 160),
        ak.Affine(rotate=(-15, 15), scale=(0.9, 1.1)),
        ak.HFlip(p=0.5),
        ak.Photometric(A.CLAHE(clip_limit=3.0, p=1.0)),
        ak.Photometric(A.HueSaturationValue(p=1.0)),
        ak.Photometric(A.ISONoise(p=1.0)),
    ], scheme="ibug68")
    out = pipe(image, points, rng=np.random.default_rng(0))
    again = pipe.replay(out.record, image, points)
    assert again.image.tobytes() == out.image.tobytes(), "replay is exact, albumentations steps included"
    try:
        ak.Photometric(A.HorizontalFlip())
    except TypeError as e:
        print("refused:", e)
    cv2.imwrite(args.out, cv2.cvtColor(draw_points(out.image, out.points, ak.IBUG68, out.visible), cv2.COLOR_RGB2BGR))
    print("wrote", args.out, "| flips in the record:", out.record["flips"])


if __name__ == "__main__":
    main()
