"""A plain PyTorch Dataset that uses augkit's augmenters on its own — what another project writes.

Each sample gets its own generator from ``SeedSequence([seed, epoch, index])``: any sample of any
epoch can be reproduced alone, and DataLoader workers never share random state. The record of each
sample is returned too, so predictions can be mapped back to the original image.

    python examples/torch_dataset.py --data ../shared/data/ytf68/train
"""

import argparse

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

import augkit as ak
from augkit.io import read_image


class FaceLandmarks(Dataset):
    def __init__(self, folder, size=128, seed=0, train=True):
        table = pd.read_csv(f"{folder}/landmarks.csv", sep="\t")
        self.files = [f"{folder}/images/{name}" for name in table["file_name"]]
        self.points = table.iloc[:, 1:].to_numpy(np.float64).reshape(len(table), -1, 2)
        steps = [ak.ScaleMinSide(size), ak.CenterCrop(size, size)]
        if train:
            steps += [ak.Affine(rotate=(-15, 15), scale=(0.9, 1.1), translate=(-0.05, 0.05), p=0.8),
                      ak.HFlip(p=0.5),
                      ak.OneOf([ak.BrightnessContrast(brightness=(-0.2, 0.2), contrast=(0.8, 1.2)),
                                ak.Blur(sigma=(0.5, 1.2))], p=0.5)]
        self.pipe = ak.Compose(steps, scheme="ibug68")  # one warp per sample, flips swap indices
        self.size, self.seed, self.epoch = size, seed, 0

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, i]))
        out = self.pipe(read_image(self.files[i]), self.points[i], rng=rng)
        image = torch.from_numpy(out.image).permute(2, 0, 1).float().div(255)
        target = torch.from_numpy((out.points + 0.5) / self.size).float().reshape(-1)  # normalised to the crop
        return image, target, torch.from_numpy(out.visible), out.record


def collate(batch):
    images, targets, visible, records = zip(*batch)
    return torch.stack(images), torch.stack(targets), torch.stack(visible), list(records)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/ytf68/train")
    ap.add_argument("--n", type=int, default=64)
    args = ap.parse_args()
    ds = FaceLandmarks(args.data)
    ds.files, ds.points = ds.files[:args.n], ds.points[:args.n]
    loader = DataLoader(ds, batch_size=16, shuffle=True, num_workers=0, collate_fn=collate)
    images, targets, visible, records = next(iter(loader))
    print("batch", tuple(images.shape), "targets", tuple(targets.shape), "visible", float(visible.float().mean()))
    # a prediction in the crop maps back to original pixels through the record
    pred = targets[0].numpy().reshape(-1, 2) * ds.size - 0.5
    back = ds.pipe.invert(records[0], pred)
    print("first sample mapped back to original pixels:", np.round(back[:3], 2).tolist())


if __name__ == "__main__":
    main()
