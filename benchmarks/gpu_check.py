"""One command for a GPU machine: the GPU paths of augkit measured in one table.

    python benchmarks/gpu_check.py [--quick]

On CUDA it prints: training img/s of ResNet-50 (random weights) at 128 and 224 px, float32 vs
bf16 + channels_last, and at 128 px bf16 with the ``--ema`` weight average updated every step
and as timm's resnet50 (``--backbone timm/resnet50``); each landmark head (``--head regression,
rle, integral, simcc``) at the competition's 971 points, 128 px bf16: img/s, peak GPU memory and
the ratio to the regression head; the share of each training step spent
waiting for data with
workers = cores - 1 (JPEGs of synthetic faces in a temporary folder, the default augmentation);
TTA img/s with all views stacked vs one forward per view for ``flip`` and ``full``; a 1-epoch
``augkit train`` demo run on CUDA (AMP, channels_last, pinned memory); and the largest difference
between the CUDA and CPU predictions of its checkpoint (px). Every measurement is bounded in time
(the whole run stays under 8 minutes) and one that fails prints an error row instead of stopping
the table. No downloads: random weights, synthetic data. Without CUDA it says so in one line and
exits 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
import traceback

TOTAL_S = 7.5 * 60          # the whole run, start to table
START = time.time()
# what the measurements run on; --smoke-cpu swaps in the CPU and a tiny model to test this script's logic
RUN = {"device": "cuda", "backbone": "resnet50", "timm_backbone": "timm/resnet50", "demo_backbone": "resnet18",
       "sizes": ((128, 128), (224, 64)),
       "tta_size": 128, "wait_size": 128, "wait_batch": 128, "wait_images": 768, "demo": (2048, 128, 64, 64)}
SMOKE = {"device": "cpu", "backbone": "tiny", "timm_backbone": "timm/resnet18", "demo_backbone": "tiny",
         "sizes": ((32, 8), (48, 8)), "tta_size": 32,
         "wait_size": 32, "wait_batch": 8, "wait_images": 48, "demo": (48, 16, 8, 32)}


class Table:
    """Rows of (measurement, value, note), printed at the end (and on a fatal stop)."""

    def __init__(self):
        self.rows = []

    def add(self, what: str, value: str, note: str = "") -> None:
        self.rows.append((what, value, note))
        print(f"  .. {what}: {value}  {note}", flush=True)

    def print(self) -> None:
        w0 = max([len(r[0]) for r in self.rows] + [10])
        w1 = max([len(r[1]) for r in self.rows] + [5])
        print()
        print(f"{'measurement':<{w0}}  {'value':>{w1}}  note")
        print("-" * (w0 + w1 + 30))
        for what, value, note in self.rows:
            print(f"{what:<{w0}}  {value:>{w1}}  {note}")
        print(f"(total {time.time() - START:.0f} s)")


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def measure(table: Table, name: str, fn, budget_s: float) -> None:
    """Run ``fn(budget_s)`` under an alarm; an exception or a timeout becomes an error row."""
    left = TOTAL_S - (time.time() - START)
    if left < budget_s * 0.5:
        table.add(name, "skipped", f"only {left:.0f} s of the {TOTAL_S:.0f} s left")
        return
    signal.alarm(int(min(budget_s, left)) + 20)
    try:
        fn(min(budget_s, left))
    except _Timeout:
        table.add(name, "ERROR", f"did not finish within {min(budget_s, left) + 20:.0f} s")
    except Exception as e:  # keep the table going
        table.add(name, "ERROR", f"{type(e).__name__}: {str(e)[:160]}")
        traceback.print_exc(limit=3)
    finally:
        signal.alarm(0)


def _sync():
    import torch
    if RUN["device"] == "cuda":
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------ training speed

def _engine(backbone: str, size: int, amp: bool, channels_last: bool, head: str = "regression", n_points: int = 68):
    import torch
    from augkit.train.loop import Engine
    from augkit.models.network import build_model
    from augkit.train.schedule import LRSchedule
    from augkit.train.state import TrainState
    dev = torch.device(RUN["device"])
    torch.manual_seed(0)
    model = build_model(backbone, n_points, head=head, input_size=(size, size)).to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    engine = Engine(model, model, dev, torch.bfloat16 if amp else None, channels_last, n_points, size, "smooth-l1")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    state = TrainState(model, opt, LRSchedule("none", 1e-4, 100, 1), torch.amp.GradScaler("cuda", enabled=False))
    return engine, state


def train_speed(table: Table, size: int, amp: bool, batch: int, seconds: float, backbone: str | None = None,
                ema: float | None = None, head: str = "regression", n_points: int = 68) -> float:
    """Training img/s of ResNet-50 (or ``backbone``) on batches already on the GPU (model speed
    alone); with ``ema`` the weight average (``torch.optim.swa_utils.AveragedModel``, as
    ``augkit train --ema``) is updated after every step. ``head`` / ``n_points``: the landmark head
    (``augkit train --head``) and K; with a head other than regression (or K other than 68) the
    row also gives the peak GPU memory of the steps."""
    import torch
    from augkit.train.epoch import optimiser_step
    dev = RUN["device"]
    backbone = backbone or RUN["backbone"]
    engine, state = _engine(backbone, size, amp and dev == "cuda", amp and dev == "cuda", head, n_points)
    averaged = None
    if ema is not None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
        averaged = AveragedModel(engine.model, multi_avg_fn=get_ema_multi_avg_fn(ema), use_buffers=True)
    g = torch.Generator(device=dev).manual_seed(0)
    batch_d = {"image": torch.randint(0, 255, (batch, size, size, 3), dtype=torch.uint8, device=dev, generator=g),
               "target": torch.rand(batch, n_points, 2, device=dev, generator=g),
               "mask": torch.ones(batch, n_points, dtype=torch.bool, device=dev)}

    def step():
        loss = engine.batch_loss(engine.forward(engine.net, batch_d["image"]), batch_d)
        optimiser_step(engine, state, loss)
        if averaged is not None:
            averaged.update_parameters(engine.model)

    for _ in range(3):
        step()
    _sync()
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0, n = time.perf_counter(), 0
    while n < 5 or time.perf_counter() - t0 < seconds:
        step()
        n += 1
        if n % 5 == 0:
            _sync()
    _sync()
    ips = n * batch / (time.perf_counter() - t0)
    mode = ("bf16 + channels_last" if amp else "float32 (cuDNN TF32 as torch defaults)") if dev == "cuda" else \
        ("float32" + (" (smoke: no AMP on CPU)" if amp else ""))
    note = f"batch {batch}, {n} steps"
    if averaged is not None:  # the average must be a real one: it moved, and it is not the last weights
        w, a = engine.model.state_dict(), averaged.module.state_dict()
        moved = max(float((a[k].float() - w[k].float()).abs().max()) for k in w if w[k].is_floating_point())
        note += f"; EMA {ema} over {int(averaged.n_averaged)} steps, max |EMA - weights| {moved:.2g}"
        mode += f" + EMA {ema}"
    label = f"train {backbone} {size}px {mode}"
    if head != "regression" or n_points != 68:
        label = f"train {backbone} {size}px head {head} K={n_points}"
        note += (f"; peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if dev == "cuda"
                 else "; memory: CUDA only")
    table.add(label, f"{ips:.0f} img/s", note)
    engine = state = averaged = None  # free the GPU memory before the next row
    if dev == "cuda":
        torch.cuda.empty_cache()
    return ips


# ------------------------------------------------------------------------------- data waiting

def _face_folder(n: int, folder: str):
    """``n`` synthetic faces written as JPEGs; returns an object with files, points, sizes."""
    import cv2
    import numpy as np
    from augkit.data.synthetic import SyntheticFaces
    faces = SyntheticFaces(n, seed=0)
    files = []
    for i in range(n):
        path = os.path.join(folder, f"face_{i}.jpg")
        cv2.imwrite(path, faces.image(i)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        files.append(path)

    class Table_:
        pass
    t = Table_()
    t.files, t.points, t.sizes = files, np.asarray(faces.points, np.float64), np.asarray(faces.sizes)
    return t


def data_wait(table: Table, seconds: float) -> None:
    """Share of each step spent waiting for the loader: ResNet-50 bf16 at 128 px, real JPEG
    decoding and the default face augmentation, workers = cores - 1, pinned memory."""
    from augkit.compose import Compose
    from augkit.presets import face_augment_steps, preprocess_steps
    from augkit.schemes import get_scheme
    from augkit.train import data as train_data
    workers = max(1, (os.cpu_count() or 2) - 1)
    with tempfile.TemporaryDirectory() as folder:
        src = train_data.FileSource(_face_folder(RUN["wait_images"], folder))
        pipe = Compose(preprocess_steps(RUN["wait_size"]) + face_augment_steps(), scheme=get_scheme("ibug68"))
        ds = train_data.LandmarkDataset(src, pipe, 0, train=True)
        sampler = train_data.EpochSampler(len(ds), shuffle=True)
        cuda = RUN["device"] == "cuda"
        loader = train_data.make_loader(ds, RUN["wait_batch"], workers, sampler, pin_memory=cuda)
        engine, state = _engine(RUN["backbone"], RUN["wait_size"], cuda, cuda)
        try:
            waited, total, images = _timed_epochs(loader, sampler, engine, state, seconds)
        finally:
            del loader  # stop the workers before the folder goes
    table.add(f"data wait share, {workers} workers", f"{100 * waited / max(total, 1e-9):.0f} %",
              f"{images / max(total, 1e-9):.0f} img/s end to end; {RUN['backbone']} bf16 {RUN['wait_size']}px, "
              f"batch {RUN['wait_batch']}, JPEG + aug")


def _timed_epochs(loader, sampler, engine, state, seconds: float) -> tuple[float, float, int]:
    """(seconds waiting for batches, seconds in all, images) over ``seconds`` of training."""
    from augkit.train.epoch import optimiser_step
    waited = total = 0.0
    images, steps, epoch = 0, 0, 0
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        sampler.set_epoch(epoch)
        t = time.perf_counter()
        for batch in loader:
            t1 = time.perf_counter()
            loss = engine.batch_loss(engine.forward(engine.net, batch["image"]), batch)
            optimiser_step(engine, state, loss)
            _sync()
            t2 = time.perf_counter()
            if steps >= 2:  # the first batches include the workers' start
                waited += t1 - t
                total += t2 - t
                images += len(batch["index"])
            steps += 1
            t = t2
            if t2 > t_end:
                break
        epoch += 1
    return waited, total, images


# ------------------------------------------------------------------------------------- TTA

def tta_speed(table: Table, preset: str, seconds: float) -> None:
    """TTA img/s, all views stacked vs one forward per view (ResNet-50 bf16 at 128 px)."""
    import numpy as np
    import torch
    import augkit as ak
    from augkit.presets import preprocess_steps
    from augkit.models.checkpoint import LandmarkModel
    from augkit.models.network import build_model
    from augkit.data.synthetic import SyntheticFaces
    from augkit.tta import TTAPredictor, get_spec
    dev, size = torch.device(RUN["device"]), RUN["tta_size"]
    net = build_model(RUN["backbone"], 68).eval().to(dev)
    if dev.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    model = LandmarkModel(net, ak.Compose(preprocess_steps(size), scheme="ibug68"), ak.get_scheme("ibug68"),
                          (size, size), dev, 68)
    faces = SyntheticFaces(64, seed=1)
    images = [faces.image(i) for i in range(64)]
    spec = get_spec(preset)
    views, b = len(spec.views), 16
    ips, out = {}, {}
    for name, stacked in (("per view", False), ("stacked", True)):
        pred = TTAPredictor(model, spec, max_batch=b * views if stacked else b, stacked=stacked)
        pred.predict(images[:b])  # warm-up
        _sync()
        t0, n = time.perf_counter(), 0
        while n == 0 or time.perf_counter() - t0 < seconds / 2:
            res = [pred.predict(images[s:s + b]).points for s in range(0, len(images), b)]
            n += len(images)
        _sync()
        ips[name] = n / (time.perf_counter() - t0)
        out[name] = np.concatenate(res)
    diff = float(np.abs(out["stacked"] - out["per view"]).max())
    table.add(f"TTA {preset} ({views} views) per view", f"{ips['per view']:.0f} img/s", f"batches of {b} images")
    table.add(f"TTA {preset} ({views} views) stacked", f"{ips['stacked']:.0f} img/s",
              f"x{ips['stacked'] / ips['per view']:.2f} vs per view; max |diff| {diff:.2g} px")


# ---------------------------------------------------------------- a real run and CUDA vs CPU

def train_run_and_cpu_diff(table: Table, folder: str, seconds: float) -> None:
    """``augkit train`` on CUDA (demo faces, 1 epoch, AMP auto), then its checkpoint on CUDA vs CPU."""
    import numpy as np
    import torch
    from augkit.models.checkpoint import load_model
    from augkit.train.loop import TrainConfig, run
    from augkit.data.synthetic import SyntheticFaces
    out = os.path.join(folder, "run")
    n_train, n_val, batch, size = RUN["demo"]
    summary = run(TrainConfig(backbone=RUN["demo_backbone"], size=size, epochs=1, batch_size=batch,
                              demo_train=n_train, demo_val=n_val, workers=min(4, max(1, (os.cpu_count() or 2) - 1)),
                              quiet=True, out=out, device=RUN["device"], threads=None))
    last = summary["last"]
    table.add(f"augkit train demo on {RUN['device']} ({RUN['demo_backbone']} {size}px)", f"{last['train_img_s']:.0f} img/s",
              f"1 epoch, AMP auto, val MSE {last.get('mse', float('nan')):.1f} (mean shape "
              f"{last.get('base_mse', float('nan')):.1f})")
    faces = SyntheticFaces(32, seed=5)
    images = [faces.image(i) for i in range(32)]
    cpu = load_model(os.path.join(out, "best.pt"), device="cpu").predict(images)
    gpu = load_model(os.path.join(out, "best.pt"), device=RUN["device"])
    amp = gpu.predict(images)
    gpu.amp_dtype = None
    fp32 = gpu.predict(images)
    table.add("CUDA vs CPU prediction, max |diff|", f"{np.abs(amp - cpu).max():.3f} px",
              f"CUDA as load_model runs it ({'bf16' if RUN['device'] == 'cuda' and torch.cuda.is_bf16_supported() else 'fp16/none'} autocast); "
              f"float32 on CUDA: {np.abs(fp32 - cpu).max():.3g} px; 32 images")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter measurements (about 3 minutes)")
    ap.add_argument("--smoke-cpu", action="store_true",
                    help="test this script's logic on the CPU with a tiny model (numbers mean nothing)")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("gpu_check: torch is not installed (pip install 'augkit[train]'); nothing measured")
        return 0
    if args.smoke_cpu:
        RUN.update(SMOKE)
        print("gpu_check --smoke-cpu: the script's logic on the CPU with a tiny model; the numbers mean nothing")
    elif not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device visible to torch {torch.__version__}; the GPU paths were not measured")
        return 0
    else:
        p = torch.cuda.get_device_properties(0)
        print(f"gpu_check: {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA "
              f"{torch.version.cuda}, {os.cpu_count()} CPU cores, bf16 {torch.cuda.is_bf16_supported()}", flush=True)
        torch.backends.cudnn.benchmark = True
    signal.signal(signal.SIGALRM, _alarm)
    scale = 0.1 if args.smoke_cpu else (0.4 if args.quick else 1.0)
    table = Table()
    speed = {}
    for size, batch in RUN["sizes"]:
        for amp in (False, True):
            measure(table, f"train {size} {'bf16' if amp else 'fp32'}",
                    lambda s, size=size, batch=batch, amp=amp: speed.__setitem__(
                        (size, amp), train_speed(table, size, amp, batch, 12 * scale)), 45)
        if (size, False) in speed and (size, True) in speed:
            table.add(f"  ratio bf16+channels_last / fp32 at {size}px", f"x{speed[size, True] / speed[size, False]:.2f}")
    size0, batch0 = RUN["sizes"][0]
    measure(table, f"train {size0} bf16 + EMA", lambda s: train_speed(table, size0, True, batch0, 12 * scale,
                                                                     ema=0.999), 45)
    measure(table, f"train {RUN['timm_backbone']} {size0} bf16",
            lambda s: train_speed(table, size0, True, batch0, 12 * scale, backbone=RUN["timm_backbone"]), 60)
    heads = {}
    for head in ("regression", "rle", "integral", "simcc"):   # the heads at the competition's K, as trained
        measure(table, f"train head {head} K=971",
                lambda s, head=head: heads.__setitem__(head, train_speed(table, size0, True, batch0, 8 * scale,
                                                                         head=head, n_points=971)), 60)
    if "regression" in heads:
        table.add("  ratio head / regression (img/s)",
                  "  ".join(f"{h} x{heads[h] / heads['regression']:.2f}" for h in heads if h != "regression"))
    measure(table, "data wait share", lambda s: data_wait(table, 25 * scale), 90)
    for preset in ("flip", "full"):
        measure(table, f"TTA {preset}", lambda s, preset=preset: tta_speed(table, preset, 16 * scale), 60)
    with tempfile.TemporaryDirectory() as folder:
        measure(table, "augkit train on CUDA + CUDA vs CPU", lambda s: train_run_and_cpu_diff(table, folder, s), 150)
    table.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
