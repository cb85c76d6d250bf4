"""``augkit audit``: out-of-fold predictions for every labelled image, and a score and diagnosis of
each label (:mod:`augkit.audit.score` does the scoring).

The images are split into K folds (whole groups, e.g. people, when a group regex is given). For each
fold an ordinary ``augkit train`` run (``OUT/fold<i>``) trains on the other folds, with the fold
left out through ``--exclude``; its best checkpoint then predicts the fold with TTA (default ``full``:
the views' disagreement on the face's place and size is each image's own pose uncertainty). The
predictions go to ``OUT/fold<i>/oof_*.npy`` (float32, streamed, renamed once complete), so an
interrupted audit resumes with the folds still missing. Then :class:`augkit.audit.LabelAuditor`
fits the set's statistics on a sample of at most ``FIT_SAMPLE`` images and scores every image in
chunks; memory grows by one row of audit.csv per image. Fold models that predict their own
per-landmark sigma also write ``oof_sigma.npy`` (streamed the same way), and when every fold has it
the residuals are scored against that sigma (see :mod:`augkit.audit.score`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from dataclasses import dataclass, field

import numpy as np

from augkit.errors import InputError
from augkit.files import atomic_write_text, read_json
from augkit.run_folder import RunFolder

from .score import DEFAULT_THRESHOLD, LabelAuditor, pose_spread

FOLD_DONE = "fold.json"   # written into a fold's run folder once its training finished

__all__ = ["run_audit", "AuditResult", "assign_folds", "write_fixed", "COLUMNS"]

COLUMNS = ["file_name", "score", "kind", "points", "suspect", "mse", "nme", "fold", "row"]


@dataclass
class AuditResult:
    """What an audit wrote and found: ``counts`` per kind (``ok`` included), the ``unaudited``
    rows (skipped by the reader), and the paths of audit.csv / audit.png."""

    csv: str
    png: str | None
    counts: dict
    n_images: int
    unaudited: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    scheme: object = None


def assign_folds(files, folds: int, seed: int = 0, group: str | None = None) -> np.ndarray:
    """The fold of each image: at random, or whole groups (``group``: a regex on the file name whose
    first group, or match, is the group; ``person`` for ytf68-style names) dealt largest first to the
    emptiest fold. Shape: (N,)."""
    from augkit.train.data import PERSON_REGEX, person_key
    n = len(files)
    if folds < 2:
        raise InputError(f"--folds must be at least 2, got {folds}")
    if n < folds:
        raise InputError(f"{n} labelled image(s) cannot be split into {folds} folds; use --folds {max(2, n)} or "
                         "more images" if n >= 2 else f"{n} labelled image(s): an audit needs at least 2")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2718]))
    if group is None:
        out = np.empty(n, np.int64)
        out[rng.permutation(n)] = np.arange(n) % folds
        return out
    regex = PERSON_REGEX if group == "person" else group
    try:
        re.compile(regex)
    except re.error as e:
        raise InputError(f"--val-group: {group!r} is not a valid regular expression ({e})") from None
    keys = [person_key(f, regex) for f in files]
    uniq, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
    if len(uniq) < folds:
        raise InputError(f"--val-group {group!r}: {len(uniq)} group(s) cannot be split into {folds} folds")
    order = rng.permutation(len(uniq))
    order = order[np.argsort(-counts[order], kind="stable")]
    load, fold_of_group = np.zeros(folds), np.empty(len(uniq), np.int64)
    for g in order:
        f = int(np.argmin(load))
        fold_of_group[g] = f
        load[f] += counts[g]
    return fold_of_group[inv]


def _train_fold(train_cfg, data, fold_dir, heldout, resume: bool, log):
    """Train (or finish training) one fold's model as an ordinary run folder."""
    import dataclasses

    from augkit.train.loop import run
    folder = RunFolder(fold_dir)
    done = folder.has(folder.BEST_NAME) and folder.has(FOLD_DONE)
    if done:
        log(f"{fold_dir}: trained already")
        return
    if folder.has(folder.LAST_NAME) and resume:
        log(f"{fold_dir}: resuming its training")
        run(dataclasses.replace(train_cfg, out=None), resume=fold_dir)
    else:
        if os.path.isdir(fold_dir):
            shutil.rmtree(fold_dir)
        cfg = dataclasses.replace(train_cfg, data=data, exclude=heldout, out=fold_dir, limit=None)
        run(cfg)
    folder.write_json(FOLD_DONE, {"trained": True})


# a fold's out-of-fold predictions: points (n, K, 2), spread (n, K), views' pose spread (n, 3)
OOF_POINTS, OOF_SPREAD, OOF_POSE = "oof_points.npy", "oof_spread.npy", "oof_pose_spread.npy"
OOF_SIGMA = "oof_sigma.npy"   # the models' own sigma (n, K), only from models that predict one
FIT_SAMPLE = 10_000        # images (at most) the set-wide statistics of the score are fitted on
SCORE_CHUNK = 2048         # images scored at a time


def _oof_paths(fold_dir):
    return tuple(os.path.join(fold_dir, name) for name in (OOF_POINTS, OOF_SPREAD, OOF_POSE))


OOF_DONE = "oof.json"      # the TTA the fold's out-of-fold arrays were predicted with


def _predicted(fold_dir, spec_name: str) -> bool:
    """True when the fold's out-of-fold arrays are complete and were predicted with this TTA."""
    folder = RunFolder(fold_dir)
    if not (folder.has(OOF_DONE) and all(os.path.isfile(p) for p in _oof_paths(fold_dir))):
        return False
    done = folder.read_json(OOF_DONE)
    if done.get("sigma") and not os.path.isfile(os.path.join(fold_dir, OOF_SIGMA)):
        return False
    return done.get("tta") == spec_name


def _predict_fold(predictor, files, fold_dir, progress, workers: int = 0):
    """The fold's out-of-fold predictions on disk, streamed: ``oof_points.npy`` (n, K, 2) and
    ``oof_spread.npy`` (n, K) float32 in original pixels, NaN rows for unreadable images, and the
    views' :func:`augkit.audit.pose_spread` ``oof_pose_spread.npy`` (n, 3); when the model predicts
    its own sigma (the chunks carry ``sigma``), ``oof_sigma.npy`` (n, K) too. Written under
    temporary names and renamed once complete, then ``oof.json`` names the TTA (a fold with all its
    files and the same TTA is done; another ``--tta`` on ``--resume`` predicts again, without
    retraining)."""
    from numpy.lib.format import open_memmap
    n, k = len(files), predictor.scheme.n_points
    final = _oof_paths(fold_dir)
    tmp = [p[:-4] + ".partial.npy" for p in final]
    arrays = [open_memmap(t, mode="w+", dtype=np.float32, shape=shape)
              for t, shape in zip(tmp, ((n, k, 2), (n, k), (n, 3)))]
    pts, spr, pose = arrays
    sig, sig_tmp = None, os.path.join(fold_dir, OOF_SIGMA[:-4] + ".partial.npy")
    stale = os.path.join(fold_dir, OOF_SIGMA)
    if os.path.isfile(stale):       # from an earlier prediction: this one writes its own, or none
        os.remove(stale)
    norm = predictor.scheme.norm
    for chunk in predictor.iter_predict(files, progress=progress, keep_members=True, workers=workers):
        sl = slice(chunk.start, chunk.start + len(chunk))
        ok = chunk.ok
        pts[sl] = np.where(ok[:, None, None], chunk.points, np.nan)
        spr[sl] = np.where(ok[:, None], chunk.spread, np.nan)
        if ok.any():
            ps = np.full((len(chunk), 3), np.nan)
            ps[ok] = pose_spread(chunk.members[ok], chunk.points[ok], norm)
            pose[sl] = ps
        else:
            pose[sl] = np.nan
        sigma = getattr(chunk, "sigma", None)
        if sigma is not None:
            if sig is None:         # made on the first chunk with a sigma; rows without one stay NaN
                sig = open_memmap(sig_tmp, mode="w+", dtype=np.float32, shape=(n, k))
                sig[:] = np.nan
            sig[sl] = np.where(ok[:, None], np.asarray(sigma, np.float64), np.nan)
    for arr in arrays:
        arr.flush()
    del pts, spr, pose, arrays
    if sig is not None:
        sig.flush()
        del sig
        os.replace(sig_tmp, stale)
    for t, p in zip(tmp, final):
        os.replace(t, p)
    RunFolder(fold_dir).write_json(OOF_DONE, {"tta": predictor.spec.name, "images": n,
                                              "sigma": os.path.isfile(stale)})


def _rows(path, rows) -> np.ndarray:
    """Rows (a slice or an index array) of a fold's ``.npy`` array as float64, read through a
    memory map that is closed again: the pages of the fold's arrays do not stay mapped (and counted
    in the process's memory) while the next chunk is read."""
    arr = np.load(path, mmap_mode="r")
    try:
        return np.array(arr[rows], np.float64)
    finally:
        del arr


def _fold_data(out_dir, fold_of, folds):
    """Per fold: (fold, its indices into the table, the paths of its out-of-fold points, spread and
    pose spread)."""
    for f in range(folds):
        yield f, np.flatnonzero(fold_of == f), _oof_paths(os.path.join(out_dir, f"fold{f}"))


def _sigma_paths(out_dir, folds) -> list | None:
    """The folds' ``oof_sigma.npy``, or None unless every fold has one (then the audit scores the
    residuals against the models' sigma)."""
    paths = [os.path.join(out_dir, f"fold{f}", OOF_SIGMA) for f in range(folds)]
    return paths if all(os.path.isfile(p) for p in paths) else None


def _fit_scorer(out_dir, fold_of, folds, table, scheme, seed: int = 0, use_sigma: bool = True):
    """The :class:`LabelAuditor` of this set, its statistics fitted on a random sample of at most
    ``FIT_SAMPLE`` readable images of all folds (with the folds' sigma when they all have it and
    ``use_sigma``)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 3141]))
    n = len(fold_of)
    take = np.zeros(n, bool)
    take[rng.choice(n, min(n, FIT_SAMPLE), replace=False)] = True
    sigma_paths = _sigma_paths(out_dir, folds) if use_sigma else None
    parts: list[list] = [[], [], [], [], []]
    for f, idx, paths in _fold_data(out_dir, fold_of, folds):
        sel = np.flatnonzero(take[idx])
        parts[0].append(np.asarray(table.points[idx[sel]], np.float64))
        for part, path in zip(parts[1:], paths + ((sigma_paths[f],) if sigma_paths else ())):
            part.append(_rows(path, sel))
    lab, pr, sp, pose_sd = (np.concatenate(p) for p in parts[:4])
    ok = np.isfinite(pr).all(axis=(1, 2))
    if ok.sum() < 2:
        raise InputError(f"only {int(ok.sum())} image(s) could be read and predicted: nothing to audit")
    perm = scheme.perm if scheme.flip_pairs else None
    views = pose_sd[ok] if np.nanmax(pose_sd[ok]) > 0 else None   # one view: no pose spread
    sigma = np.concatenate(parts[4])[ok] if sigma_paths else None
    return LabelAuditor(perm, scheme.norm).fit(lab[ok], pr[ok], sp[ok], views, sigma=sigma)


def _score_all(out_dir, fold_of, folds, table, scheme, threshold, seed: int = 0, use_sigma: bool = True):
    """audit.csv from the folds' out-of-fold predictions: every image scored in chunks against
    the set's statistics, most suspect first. Holds a few numbers and one row of text per image."""
    scorer = _fit_scorer(out_dir, fold_of, folds, table, scheme, seed, use_sigma)
    names = [os.path.basename(f) for f in table.files]
    lines = table.lines if table.lines is not None else np.full(len(table), -1)
    sigma_paths = _sigma_paths(out_dir, folds) if scorer.with_sigma else None
    texts, scores = [], []
    for f, idx, paths in _fold_data(out_dir, fold_of, folds):
        for a in range(0, len(idx), SCORE_CHUNK):
            ids, rows = idx[a:a + SCORE_CHUNK], slice(a, a + SCORE_CHUNK)
            pr, spr, pose = (_rows(p, rows) for p in paths)
            ok = np.isfinite(pr).all(axis=(1, 2))
            if not ok.any():
                continue
            sigma = _rows(sigma_paths[f], rows)[ok] if sigma_paths else None
            s = scorer.score(table.points[ids[ok]], pr[ok], spr[ok], pose[ok] if scorer.with_pose_sd else None,
                             threshold, sigma=sigma)
            scores.append(s.score)
            for j, i in enumerate(ids[ok]):
                texts.append((names[i], s.kind[j], " ".join(map(str, s.points[j])),
                              f"{s.mse[j]:.5g}", f"{s.nme[j]:.5g}", f, int(lines[i])))
    score = np.concatenate(scores) if scores else np.zeros(0)
    del scores
    order = np.argsort(-score, kind="stable")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(COLUMNS)
    counts: dict = {}
    top: list[dict] = []
    for i in order:
        name, kind, points, mse, nme, fold, row = texts[i]
        suspect = bool(score[i] > threshold)
        kind = kind if suspect else "ok"
        counts[kind] = counts.get(kind, 0) + 1
        w.writerow([name, f"{score[i]:.3f}", kind, points if kind == "points" else "", "true" if suspect else "false",
                    mse, nme, fold, row])
        if suspect and len(top) < 16:
            top.append({"file_name": name, "kind": kind, "points": points, "fold": fold, "score": float(score[i])})
    atomic_write_text(os.path.join(out_dir, "audit.csv"), buf.getvalue())
    return counts, len(texts), top


def run_audit(data, out, train_cfg, folds: int = 3, tta="full", resume: bool = False,
              threshold: float = DEFAULT_THRESHOLD, group: str | None = None, device: str = "cpu",
              n_png: int = 8, log=print, progress=None, use_sigma: bool = True) -> AuditResult:
    """Audit the labels of ``data`` into the folder ``out`` (see the module docstring).

    Args:
        train_cfg: the :class:`augkit.train.loop.TrainConfig` every fold model is trained with
            (its data, out and exclude are set per fold).
        group: regex (or ``person``) that keeps groups within one fold; default the config's
            ``val_group``.
        use_sigma: score the residuals against the fold models' own sigma when every fold has
            one (``oof_sigma.npy``); False: the set-wide per-landmark error, as for regression.
    """
    from augkit.models.checkpoint import load_model
    from augkit.data import read_dataset

    from augkit.tta.predictor import TTAPredictor, default_workers
    from augkit.tta.views import get_spec

    table = read_dataset(data, format=train_cfg.format)
    group = group if group is not None else train_cfg.val_group
    fold_of = assign_folds(table.files, folds, train_cfg.seed, group)
    os.makedirs(out, exist_ok=True)
    names = [os.path.basename(f) for f in table.files]
    plan = os.path.join(out, "folds.json")
    if os.path.isfile(plan):
        before = read_json(plan)
        if not isinstance(before, dict) or before.get("files") != names or before.get("folds") != folds:
            if resume:
                raise InputError(f"{out}: the audit there was started on other images or another --folds; "
                                 "use a new --out")
            raise InputError(f"{out} holds another audit; pass --resume to continue it, or use a new --out")
        if not resume:
            raise InputError(f"{out} holds an audit already; pass --resume to continue it, or use a new --out")
    atomic_write_text(plan, json.dumps({"data": os.path.abspath(data), "folds": folds, "group": group,
                                        "files": names, "fold": fold_of.tolist()}) + "\n")
    spec = get_spec(tta)
    workers = default_workers() if train_cfg.workers is None else int(train_cfg.workers)
    for f in range(folds):
        fold_dir = os.path.join(out, f"fold{f}")
        if resume and _predicted(fold_dir, spec.name):
            log(f"fold {f + 1}/{folds}: done already")
            continue
        idx = np.flatnonzero(fold_of == f)
        os.makedirs(fold_dir, exist_ok=True)
        heldout = os.path.join(out, f"heldout{f}.csv")
        atomic_write_text(heldout, "file_name\n" + "".join(f"{names[i]}\n" for i in idx))
        log(f"fold {f + 1}/{folds}: training on {len(table) - len(idx)} images, {len(idx)} held out")
        _train_fold(train_cfg, data, fold_dir, heldout, resume, log)
        predictor = TTAPredictor(load_model(RunFolder(fold_dir).best_pt, device=device), spec)
        log(f"fold {f + 1}/{folds}: predicting {len(idx)} held-out images with TTA {spec.name}")
        _predict_fold(predictor, [table.files[i] for i in idx], fold_dir, progress, workers)
    scheme = load_model(RunFolder(os.path.join(out, "fold0")).best_pt, device=device).scheme
    notes = [] if scheme.flip_pairs else [f"the scheme {scheme.name!r} has no flip pairs: no 'swap' diagnosis"]
    if _sigma_paths(out, folds):
        notes.append("the fold models predict their own sigma: the residuals are scored against it" if use_sigma
                     else "the fold models predict their own sigma: not used (--no-sigma)")
    counts, n, top = _score_all(out, fold_of, folds, table, scheme, threshold, train_cfg.seed, use_sigma)
    png = _picture(out, table, top[:n_png], tta, device) if top and n_png else None
    return AuditResult(os.path.join(out, "audit.csv"), png, counts, n,
                       [dict(s) for s in table.skipped], notes, scheme)


def _picture(out, table, top, tta, device):
    """audit.png: the top suspects, label (green) and prediction (red), suspect points circled."""
    import cv2

    from augkit.files import atomic_write_bytes
    from augkit.io import read_image
    from augkit.models.checkpoint import load_model

    from augkit.tta.predictor import TTAPredictor
    where = {os.path.basename(f): i for i, f in enumerate(table.files)}
    tiles, predictors = [], {}
    for r in top:
        i = where[r["file_name"]]
        if r["fold"] not in predictors:     # each fold's model loaded once
            predictors[r["fold"]] = TTAPredictor(
                load_model(RunFolder(os.path.join(out, f"fold{r['fold']}")).best_pt, device=device), tta)
        pred = predictors[r["fold"]].predict([table.files[i]]).points[0]
        img = np.ascontiguousarray(read_image(table.files[i]))
        img = img if img.ndim == 3 and img.shape[2] == 3 else cv2.cvtColor(img.reshape(img.shape[:2]),
                                                                             cv2.COLOR_GRAY2RGB)
        scale = 256 / max(img.shape[:2])
        img = cv2.resize(img, (int(img.shape[1] * scale), int(img.shape[0] * scale)))
        for pts, colour in ((table.points[i], (40, 220, 40)), (pred, (230, 40, 40))):
            for x, y in pts * scale:
                cv2.circle(img, (int(x), int(y)), 2, colour, -1, cv2.LINE_AA)
        for p in (int(v) for v in r["points"].split()) if r["kind"] == "points" else ():
            x, y = table.points[i][p] * scale
            cv2.circle(img, (int(x), int(y)), 7, (255, 230, 40), 1, cv2.LINE_AA)
        cv2.putText(img, f"{r['kind']} {r['score']:.1f}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1)
        tile = np.zeros((256, 256, 3), np.uint8)
        tile[:img.shape[0], :img.shape[1]] = img
        tiles.append(tile)
    cols = min(4, len(tiles))
    rows = -(-len(tiles) // cols)
    grid = np.zeros((rows * 256, cols * 256, 3), np.uint8)
    for k, t in enumerate(tiles):
        grid[k // cols * 256:(k // cols + 1) * 256, k % cols * 256:(k % cols + 1) * 256] = t
    ok, buf = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    path = os.path.join(out, "audit.png")
    atomic_write_bytes(path, buf.tobytes())
    return path


def write_fixed(label_file, audit_csv, scheme, out_path) -> int:
    """A copy of ``label_file`` with the rows that the audit calls ``swap`` (and suspect)
    re-indexed by the scheme's flip pairs; every other line byte-identical. Returns the rows fixed.

    The label file must hold, after the file name, the x and y of points 0, 1, ... in order (the
    competition layout and augkit's CSV); the tokens of a fixed row are moved, not re-formatted.
    """
    fix = set()
    with open(audit_csv, encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            if r["kind"] == "swap" and r["suspect"] == "true":
                fix.add(r["file_name"])
    with open(label_file, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8")
    lines = text.splitlines(keepends=True)
    delim = "\t" if "\t" in lines[0] else ","
    perm = scheme.perm
    fixed = 0
    out = []
    for n, line in enumerate(lines):
        body = line.rstrip("\r\n")
        fields = body.split(delim)
        if n > 0 and os.path.basename(fields[0]) in fix:
            coords = fields[1:]
            if len(coords) != 2 * scheme.n_points:
                raise InputError(f"{label_file}: line {n + 1} has {len(coords)} values after the file name, "
                                 f"expected {2 * scheme.n_points} (x, y of each point in order)")
            pairs = [coords[2 * i:2 * i + 2] for i in range(scheme.n_points)]
            body = delim.join([fields[0]] + [v for i in range(scheme.n_points) for v in pairs[perm[i]]])
            line = body + line[len(line.rstrip("\r\n")):]
            fixed += 1
        out.append(line)
    atomic_write_text(out_path, "".join(out))
    return fixed
