"""Label reader at competition shape: seconds and peak memory of reading ``landmarks.csv``.

Builds (once) a synthetic competition-layout set in ``--dir``: ``landmarks.csv`` with ``--rows``
rows of ``--points`` integer points (TSV, ``Point_0_X`` or ``Point_M0_X`` header) and one empty file per row under
``images/`` (the reader only checks that images exist). Each measurement runs in its own Python
process: it imports the reader, records its peak RSS (``resource.getrusage``) as the baseline,
reads the file and prints the seconds, the points array's bytes, the peak RSS above the baseline
and its ratio to the array (and to the float32 array it should be).

    python benchmarks/reader_memory.py --rows 80000                       # the current reader
    python benchmarks/reader_memory.py --rows 80000 --reader OLD_READERS.py  # another readers.py

``--reader`` loads a readers module from a file (e.g. ``git show REV:train/readers.py > old.py``)
to compare against an earlier version in the same way. Nothing is written inside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

CHILD = r"""
import importlib.util, json, resource, sys, time
import numpy, pandas  # imported in every run: the baseline holds them whatever the reader imports
path, reader = sys.argv[1], sys.argv[2]
if reader:
    spec = importlib.util.spec_from_file_location("bench_readers", reader)
    R = importlib.util.module_from_spec(spec)
    sys.modules["bench_readers"] = R
    spec.loader.exec_module(R)
else:
    import augkit.data as R
def rss_now():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
base_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
base = rss_now()  # the resident set now: the peak so far may hold memory the imports gave back
t0 = time.perf_counter()
table = R.read_dataset(path)
took = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"rows": len(table), "seconds": took, "array_bytes": int(table.points.nbytes),
                  "dtype": str(table.points.dtype), "peak_above_baseline": int(peak - base),
                  "baseline": int(base), "baseline_peak": int(base_peak), "rss_after": int(rss_now() - base),
                  "skipped": len(table.skipped)}))
"""


def build(folder: Path, rows: int, points: int, naming: str = "Point_0_X", seed: int = 0) -> Path:
    """Write the synthetic set unless it is already there with the same shape."""
    label = folder / "landmarks.csv"
    stamp = folder / "shape.json"
    shape = {"rows": rows, "points": points, "seed": seed, "naming": naming}
    if label.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == shape:
        return folder
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    text = [str(v) for v in range(1000)]
    header = "\t".join(["file_name"] + [naming.replace("0", str(i)).replace("X", a) for i in range(points) for a in "XY"])
    with open(label, "w") as f:
        f.write(header + "\n")
        for start in range(0, rows, 2000):
            block = rng.integers(0, 1000, (min(2000, rows - start), 2 * points))
            rows_text = (f"img{start + i:07d}.jpg\t" + "\t".join(map(text.__getitem__, r)) + "\n"
                         for i, r in enumerate(block.tolist()))
            f.write("".join(rows_text))
    for i in range(rows):
        p = folder / "images" / f"img{i:07d}.jpg"
        if not p.exists():
            p.touch()
    stamp.write_text(json.dumps(shape))
    return folder


def measure(folder: Path, reader: str | None) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(folder), reader or ""], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[20000, 80000])
    ap.add_argument("--points", type=int, default=971)
    ap.add_argument("--dir", default="/tmp/augkit_reader_bench")
    ap.add_argument("--naming", default="Point_0_X", choices=["Point_0_X", "Point_M0_X"],
                    help="header naming (the reader before issue 7 accepts Point_0_X only)")
    ap.add_argument("--reader", default=None, help="a readers.py file to measure instead of augkit.data")
    args = ap.parse_args()
    print(f"reader: {args.reader or 'augkit.data'}; {args.points} points; one process per run; "
          f"machine: {os.cpu_count()} cores")
    print(f"{'rows':>8} {'seconds':>8} {'array MB':>9} {'dtype':>8} {'peak MB':>8} {'peak/array':>10} "
          f"{'peak/float32 array':>18}")
    for rows in args.rows:
        folder = build(Path(args.dir) / f"{rows}x{args.points}_{args.naming}", rows, args.points, args.naming)
        r = measure(folder, args.reader)
        mb = 1e6
        f32 = r["rows"] * args.points * 2 * 4
        print(f"{r['rows']:>8} {r['seconds']:>8.1f} {r['array_bytes'] / mb:>9.0f} {r['dtype']:>8} "
              f"{r['peak_above_baseline'] / mb:>8.0f} {r['peak_above_baseline'] / r['array_bytes']:>10.2f} "
              f"{r['peak_above_baseline'] / f32:>18.2f}")


if __name__ == "__main__":
    main()
