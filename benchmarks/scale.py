"""Competition scale: time and peak memory of the reader, predict, evaluate and tta fit on a
competition-shaped synthetic set (971 integer points per row), each command in its own process.

    python benchmarks/scale.py [--quick] [--rows 20000 80000] [--images 500 2000] [--workers 0 1 2]
                               [--size 64] [--keep DIR]

What it builds (in a temporary folder, removed at the end unless ``--keep``):

- ``reader_<N>/landmarks.csv``: N rows x 971 integer points (TSV, the competition's header
  ``Point_M0_X`` when the installed reader accepts it, else ``Point_0_X``), images symlinked to
  ytf68 frames (cycling);
- ``set_<N>/``: N labelled test images (``landmarks.csv``, ``test_points.csv`` listing 30 point
  indices per image, ``images/`` symlinks to ytf68 frames);
- ``model.pt``: a 971-point ``tiny`` backbone (initialised, not trained: the numbers are about time
  and memory, not accuracy), saved with ``augkit.models.checkpoint.save_checkpoint``.

What it prints (markdown): the reader at each row count (seconds, peak RSS, the float32 points
array and the ratio of the two); ``predict``, ``evaluate`` and ``tta fit`` with ``--tta full`` at
each image count with ``--workers 0`` (seconds, peak RSS, late peak RSS, growth per image of
both between the two counts); predict img/s with each ``--workers`` value (baseline: workers 0, in the same run); and
the projection to the competition's 99,819 test images and 393,930 training rows. Peak RSS is the
child's ``ru_maxrss`` from ``wait4`` (the largest resident set of that process; worker processes
are separate and bounded by their prefetch queue); the late peak is the largest RSS sampled in the
second half of the run, so arrays that grow with the images show even under a start-up transient.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness import YTF68  # noqa: E402
K = 971
TEST_ROWS, TRAIN_ROWS = 99_819, 393_930
LISTED = 30          # point indices per test_points.csv row


# ------------------------------------------------------------------------------------ the data

def _frames() -> tuple[list, np.ndarray]:
    """ytf68 frames (train then test) and their 68 points, to cycle over."""
    from augkit.data import read_dataset
    files, pts = [], []
    for part in ("train", "test"):
        t = read_dataset(YTF68 / part)
        files += list(t.files)
        pts.append(np.asarray(t.points, dtype=np.float64))
    return files, np.concatenate(pts)


def _points_971(p68: np.ndarray, rng) -> np.ndarray:
    """971 integer points per face: the 68 real ones, then points between random pairs of them."""
    n = len(p68)
    a = rng.integers(0, 68, K - 68)
    b = rng.integers(0, 68, K - 68)
    t = rng.random(K - 68)[None, :, None]
    extra = p68[:, a] * (1 - t) + p68[:, b] * t
    return np.rint(np.concatenate([p68, extra], axis=1)).reshape(n, -1).astype(np.int64)


def _header(competition: bool) -> str:
    name = "Point_M{}_{}" if competition else "Point_{}_{}"
    return "file_name\t" + "\t".join(name.format(i, a) for i in range(K) for a in "XY")


def _competition_header_ok(tmp: Path) -> bool:
    """Whether the installed reader takes the competition's ``Point_M0_X`` header."""
    from augkit.data import read_dataset
    d = tmp / "probe"
    (d / "images").mkdir(parents=True)
    frames, p68 = _frames_cache
    os.symlink(frames[0], d / "images" / "a.jpg")
    row = "\t".join(str(v) for v in _points_971(p68[:1], np.random.default_rng(0))[0])
    (d / "landmarks.csv").write_text(_header(True) + "\n" + "a.jpg\t" + row + "\n")
    try:
        read_dataset(d)
        return True
    except Exception:  # noqa: BLE001 - refused: use the plain header
        return False
    finally:
        shutil.rmtree(d)


def build_set(folder: Path, n: int, competition: bool, test_points: bool, seed: int = 0) -> None:
    """``folder/landmarks.csv`` (+ ``test_points.csv``) and ``folder/images`` (symlinks), N rows."""
    frames, p68 = _frames_cache
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    src = np.arange(n) % len(frames)
    names = [f"img_{i:06d}{os.path.splitext(frames[s])[1]}" for i, s in enumerate(src)]
    for name, s in zip(names, src):
        os.symlink(frames[s], folder / "images" / name)
    with open(folder / "landmarks.csv", "w") as f:
        f.write(_header(competition) + "\n")
        for start in range(0, n, 5000):
            block = _points_971(p68[src[start:start + 5000]], rng)
            f.write("".join(nm + "\t" + "\t".join(map(str, row)) + "\n"
                            for nm, row in zip(names[start:start + 5000], block.tolist())))
    if test_points:
        with open(folder / "test_points.csv", "w") as f:
            f.write("file_name\tpoint_index_list\n")
            for name in names:
                f.write(f"{name}\t{sorted(rng.choice(K, LISTED, replace=False).tolist())}\n")


def build_model(path: Path, size: int, head: str = "regression") -> None:
    """A 971-point tiny model with ``head``, initialised and saved as an augkit checkpoint."""
    import torch

    import augkit as ak
    from augkit.presets import preprocess_steps
    from augkit.schemes import Scheme
    from augkit.models.checkpoint import save_checkpoint
    from augkit.models.heads import find_head, head_info
    from augkit.models.network import build_model as build
    torch.manual_seed(0)
    model = build("tiny", K, head=head, input_size=(size, size))
    scheme = Scheme("synthetic971", K, tuple((i, K - 1 - i) for i in range(0, 200)), norm=(0, 1))
    save_checkpoint(path, {"model": model.state_dict(), "preprocessing": ak.Compose(preprocess_steps(size)).to_dict(),
                           "scheme": scheme.to_dict(), "model_info": {"backbone": "tiny", "n_points": K,
                                                                       "input_size": [size, size],
                                                                       "head": head_info(find_head(model))},
                           "config": {}, "epoch": 0})


# ----------------------------------------------------------------------------------- measuring

def run(cmd: list, env=None) -> tuple[float, int, str, int]:
    """Run ``cmd`` in its own process: (seconds, peak RSS in bytes, output, late peak in bytes).

    The peak is the child's ``ru_maxrss`` (``wait4``). The late peak is the largest of the samples
    of ``/proc/PID/status`` (every 20 ms) taken in the second half of the run: per-image arrays held
    while the images stream show there even when a start-up transient (importing torch, loading the
    model) sets the overall peak.
    """
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
        samples = []
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            samples.append((time.perf_counter() - t0, _vm_rss(proc.pid)))
            time.sleep(0.02)
        log.seek(0)
        out = log.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{out[-3000:]}")
    late = max([r for t, r in samples if t >= secs / 2] or [0])
    return secs, usage.ru_maxrss * 1024, out, late


def _vm_rss(pid: int) -> int:
    """The resident set of a live process in bytes (0 when it cannot be read)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _mb(b: float) -> str:
    return f"{b / 2**20:,.0f} MB"


def _kb(b: float) -> str:
    return f"{b / 1024:,.1f} KB"


READER = ("import sys; from augkit.data import read_dataset; t = read_dataset(sys.argv[1]); "
          "print('ARRAY', t.points.nbytes, t.points.dtype, t.points.shape)")


def bench_reader(tmp: Path, rows: list, competition: bool) -> list:
    out = []
    for n in rows:
        d = tmp / f"reader_{n}"
        build_set(d, n, competition, test_points=False, seed=n)
        secs, rss, text, _ = run([sys.executable, "-c", READER, str(d)])
        line = [x for x in text.splitlines() if x.startswith("ARRAY")][-1].split()
        nbytes, dtype = int(line[1]), line[2]
        f32 = n * K * 2 * 4
        out.append({"rows": n, "s": secs, "rss": rss, "array": nbytes, "dtype": dtype, "f32": f32})
        print(f"  reader {n} rows: {secs:.1f} s, peak {_mb(rss)}, array {_mb(nbytes)} {dtype}", file=sys.stderr)
        shutil.rmtree(d)
    return out


HEAD = {"name": "regression"}   # --head: a σ head predicts every point with its σ, fits with --calibrate


def _commands(d: Path, model: Path, out: Path, workers: int) -> dict:
    cli = [sys.executable, "-m", "augkit.cli"]
    common = ["--checkpoint", str(model), "--data", str(d), "--tta", "full", "--workers", str(workers)]
    sigma = HEAD["name"] != "regression"
    predict = (["--out", str(out / "points.csv"), "--format", "csv", "--uncertainty"] if sigma
               else ["--out", str(out / "sub.csv")])
    return {
        "predict": cli + ["predict"] + common + predict,
        "evaluate": cli + ["evaluate"] + common + ["--n-worst", "0", "--calibration-png", str(out / "calibration.png")],
        "tta fit": cli + ["tta", "fit"] + common + ["--out", str(out / "fitted.yaml")] + (["--calibrate"] if sigma else []),
    }


def bench_commands(tmp: Path, sets: dict, model: Path, only=None) -> dict:
    res = {}
    for n, d in sets.items():
        for name, cmd in _commands(d, model, tmp, 0).items():
            if only and name not in only:
                continue
            secs, rss, _, end = run(cmd)
            res[(name, n)] = (secs, rss, end)
            print(f"  {name} {n} images: {secs:.1f} s, peak {_mb(rss)}, late peak {_mb(end)}", file=sys.stderr)
    return res


def bench_workers(tmp: Path, d: Path, n: int, model: Path, workers: list) -> dict:
    res = {}
    for w in workers:
        secs, rss, _, _ = run(_commands(d, model, tmp, w)["predict"])
        res[w] = (n / secs, secs)
        print(f"  predict --workers {w}: {n / secs:.1f} img/s", file=sys.stderr)
    return res


# ------------------------------------------------------------------------------------- report

def report(reader: list, cmds: dict, speed: dict, images: list, speed_n: int, competition: bool) -> None:
    cores = len(os.sched_getaffinity(0))
    if reader:
        print(f"\n### Reader (`read_dataset`, {K} points per row, header "
              f"`{'Point_M0_X' if competition else 'Point_0_X'}`)\n")
        print("| rows | seconds | peak RSS | points array | peak / float32 array |")
        print("|---:|---:|---:|---:|---:|")
        for r in reader:
            print(f"| {r['rows']:,} | {r['s']:.1f} | {_mb(r['rss'])} | {_mb(r['array'])} ({r['dtype']}) | "
                  f"{r['rss'] / r['f32']:.2f}x |")
    a, b = images[0], images[-1]
    names = [n for n in ("predict", "evaluate", "tta fit") if (n, a) in cmds]
    growth = {}
    if names:
        print(f"\n### `--tta full` (24 views), {K}-point model, `--workers 0`\n")
        print(f"| command | {a:,} images: s | peak RSS | late peak | {b:,} images: s | peak RSS | late peak "
              "| growth per image: peak | growth per image: late peak |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name in names:
            (sa, ra, ea), (sb, rb, eb) = cmds[(name, a)], cmds[(name, b)]
            gp, ge = (rb - ra) / (b - a), (eb - ea) / (b - a)
            growth[name] = max(gp, ge)
            print(f"| `{name}` | {sa:.1f} | {_mb(ra)} | {_mb(ea)} | {sb:.1f} | {_mb(rb)} | {_mb(eb)} | {_kb(gp)} | "
                  f"{_kb(ge)} |")
    if speed:
        print(f"\n### predict throughput (`--tta full`, {speed_n:,} images, {cores} cores)\n")
        print("| --workers | img/s | vs --workers 0 |")
        print("|---:|---:|---:|")
        base = speed[min(speed)][0]
        for w, (ips, _) in speed.items():
            print(f"| {w} | {ips:.1f} | {ips / base:.2f}x |")
    print(f"\n### Projection to the competition ({TEST_ROWS:,} test images, {TRAIN_ROWS:,} training rows)\n")
    print("| what | projected peak RSS |")
    print("|---|---:|")
    for name in names:   # the larger of the two growths; a negative one (noise) projects as none
        proj = cmds[(name, b)][1] + max(growth[name], 0.0) * (TEST_ROWS - b)
        print(f"| `{name} --tta full`, {TEST_ROWS:,} images | {proj / 2**30:.2f} GB |")
    if reader:
        r = reader[-1]
        f32 = TRAIN_ROWS * K * 2 * 4
        print(f"| reader, {TRAIN_ROWS:,} rows (float32 array {f32 / 2**30:.2f} GB) | "
              f"{r['rss'] / r['rows'] * TRAIN_ROWS / 2**30:.2f} GB |")
    print(f"\n(`evaluate` and `tta fit` hold the labels in float32, {K * 2 * 4 / 1024:.1f} KB per image, by "
          "construction; a measured growth below that means the peak was set before the labels mattered.)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (reader 2,000/8,000 rows, 100/400 images)")
    ap.add_argument("--rows", type=int, nargs="+", default=None, help="reader row counts (default 20000 80000)")
    ap.add_argument("--images", type=int, nargs=2, default=None, help="two test-set sizes (default 500 2000)")
    ap.add_argument("--workers", type=int, nargs="*", default=[0, 1, 2],
                    help="predict --workers values to time (none: skip the throughput runs)")
    ap.add_argument("--size", type=int, default=32, help="model input size (small: the model is not what is measured)")
    ap.add_argument("--skip-reader", action="store_true")
    ap.add_argument("--commands", nargs="+", default=None, choices=["predict", "evaluate", "tta fit"],
                    help="only these commands (default all three)")
    ap.add_argument("--keep", default=None, help="build in this folder and keep it")
    ap.add_argument("--head", default="regression", choices=["regression", "rle", "integral", "simcc"],
                    help="the model's head; with σ: predict writes every point with Point_k_S and Point_k_SIGMA "
                         "(--format csv --uncertainty), tta fit adds --calibrate, evaluate the calibration")
    args = ap.parse_args(argv)
    rows = args.rows or ([2000, 8000] if args.quick else [20000, 80000])
    images = sorted(args.images or ([100, 400] if args.quick else [500, 2000]))
    if not (YTF68 / "train" / "landmarks.csv").is_file():
        sys.exit(f"ytf68 not found at {YTF68}")
    global _frames_cache
    _frames_cache = _frames()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="augkit_scale_"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        competition = _competition_header_ok(tmp)
        print(f"building in {tmp} (header {'Point_M0_X' if competition else 'Point_0_X'})", file=sys.stderr)
        reader = [] if args.skip_reader else bench_reader(tmp, rows, competition)
        model = tmp / "model.pt"
        HEAD["name"] = args.head
        build_model(model, args.size, args.head)
        sets = {}
        for n in images:
            sets[n] = tmp / f"set_{n}"
            build_set(sets[n], n, competition, test_points=True, seed=n)
        cmds = bench_commands(tmp, sets, model, args.commands)
        speed = bench_workers(tmp, sets[images[0]], images[0], model, args.workers) if args.workers else {}
        print(f"\nmeasured on a {len(os.sched_getaffinity(0))}-core machine; model input {args.size}x{args.size}, "
              f"`tiny` backbone, head {args.head}; {' '.join(sys.argv[1:]) or '(defaults)'}")
        report(reader, cmds, speed, images, images[0], competition)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


_frames_cache = None

if __name__ == "__main__":
    main()
