"""Per-landmark TTA weight fit at the competition's K = 971: the batched exact solver
(``simplex_qp_batch``, every support of the members solved for all landmarks at once) against the
per-landmark NNLS loop it replaces, on synthetic residuals, same run, same data.

    python benchmarks/fit_speed.py            # M = 2, 4, 6, 8 members, 300 images
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import augkit.tta.fit as fit


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=971)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--members", type=int, nargs="+", default=[2, 4, 6, 8])
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    default = fit.BATCH_MEMBERS
    print(f"fit_weights, per landmark, K = {a.points}, {a.images} images, 10 shrinkage values x 5 folds + final\n")
    print("| members M | NNLS loop s | batched s | loop / batched | max weight difference | used by default |")
    print("|---:|---:|---:|---:|---:|---|")
    for m in a.members:
        truth = rng.normal(size=(a.images, a.points, 2)) * 10
        scale = rng.uniform(0.5, 2, size=(1, m, a.points, 1))
        members = truth[:, None] + rng.normal(size=(a.images, m, a.points, 2)) * scale
        times, weights = {}, {}
        for label, limit in (("loop", 0), ("batch", 64)):
            fit.BATCH_MEMBERS = limit
            t = time.perf_counter()
            weights[label] = fit.fit_weights(members, truth).per_landmark
            times[label] = time.perf_counter() - t
        fit.BATCH_MEMBERS = default
        diff = np.abs(weights["loop"] - weights["batch"]).max()
        print(f"| {m} | {times['loop']:.2f} | {times['batch']:.2f} | {times['loop'] / times['batch']:.1f} | "
              f"{diff:.1e} | {'batched' if m <= default else 'loop'} |")


if __name__ == "__main__":
    main()
