"""The label files of the public face-landmark benchmarks: WFLW, and COFW / AFLW (and 300-W, WFLW)
in the forms they are commonly distributed in.

- ``wflw``: WFLW's own annotation files (``list_98pt_rect_attr_train.txt`` / ``..._test.txt``):
  one face per line, space separated: 196 numbers (98 x, y pairs), the face box ``x_min y_min
  x_max y_max``, six attribute flags (``pose expression illumination make-up occlusion blur``) and
  the image path relative to ``WFLW_images/``. Points are kept as written (0-based pixels), the box
  goes to ``LandmarkTable.boxes``, the flags to ``LandmarkTable.attributes``. Images are looked up
  in a ``WFLW_images`` folder found beside the label file or beside one of its three parent
  folders (the archives unpack ``WFLW_annotations/list_98pt_rect_attr_train_test/`` next to
  ``WFLW_images/``), else beside the label file.
- ``coco``: the COCO-style keypoint JSON in which mmpose distributes the face sets
  (``cofw_train.json`` / ``cofw_test.json``, ``face_landmarks_aflw_{train,test}.json``,
  ``face_landmarks_wflw_{train,test}.json``, ``face_landmarks_300w_*.json``): ``images`` (``id``,
  ``file_name``) and ``annotations`` (``image_id``, ``keypoints`` as x, y, v triples, ``bbox`` as
  x, y, w, h, and for AFLW ``box_size``). One row per annotation; v > 0 is ``visible``. Images:
  ``images/`` beside the JSON or beside its folder (mmpose's ``data/cofw/annotations/`` +
  ``data/cofw/images/``), else the JSON's folder. This is the form COFW is read in: the original
  ``COFW_train_color.mat`` / ``COFW_test_color.mat`` are MATLAB v7.3 (HDF5) files holding the
  images inside them, which would need h5py (not a dependency) and an image export step.
- ``hrnet``: the CSVs of HRNet-Facial-Landmark-Detection (``face_landmarks_aflw_{train,test}.csv``
  and its 300-W / WFLW CSVs): a header, then ``image_name, scale, box_size, center_w, center_h``
  and 19 x, y pairs (AFLW-19), or ``image_name, scale, center_w, center_h`` and the x, y pairs
  (300-W, WFLW; which one is told by the header's third column, or, unnamed, by the column count's
  parity). ``box_size`` goes to ``LandmarkTable.box_size`` (AFLW's NME normaliser); the box is the
  square of side ``box_size`` (AFLW) or ``200 * scale`` (HRNet's crop) around the centre. Points as
  written. Images: relative to the CSV's folder, or ``images/`` beside it, or ``images``.

Every reader is streaming-friendly: the label file is read in blocks of whole lines straight into
preallocated float32 / uint8 arrays (the JSON is parsed whole: its sets are small); the only
per-row Python objects are the file names. A bad row names the file, the line (JSON: the
annotation) and the field, and is skipped, or with ``strict`` raises :class:`DatasetError`.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np

from .delimited import image_root
from .parser import F32_MAX, count_lines, decode_line, line_blocks
from .table import DatasetError, LandmarkTable, Skips

__all__ = [
    "WFLW_ATTRIBUTES",
    "is_coco_json",
    "is_hrnet_csv",
    "is_wflw",
    "read_coco_json",
    "read_hrnet_csv",
    "read_wflw",
]

#: WFLW's six attribute flags, in the order of the annotation file
WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "make-up", "occlusion", "blur")
_WFLW_POINTS = 98
_WFLW_VALUES = 2 * _WFLW_POINTS + 4 + len(WFLW_ATTRIBUTES)        # 206 numbers, then the path
_BOX_NAMES = ("x_min", "y_min", "x_max", "y_max")


# ------------------------------------------------------------------------------------ shared

def _numbers(parts: list, width: int, sep: bytes) -> np.ndarray:
    """The rows ``parts`` (bytes of ``width`` numbers separated by ``sep``) as a float64 (m, width)
    array in one C-level parse; a row that does not parse is all NaN (the caller names it)."""
    if not parts:
        return np.zeros((0, width))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            flat = np.fromstring(sep.join(parts), dtype=np.float64, sep=sep.decode())
        except (ValueError, DeprecationWarning):
            flat = None
    if flat is not None and flat.size == len(parts) * width:
        return flat.reshape(len(parts), width)
    out = np.full((len(parts), width), np.nan)
    for i, p in enumerate(parts):
        try:
            row = np.array(p.split(sep) if sep != b" " else p.split(), dtype=np.float64)
        except ValueError:
            continue
        if row.size == width:
            out[i] = row
    return out


def _usable(vals: np.ndarray) -> np.ndarray:
    """Rows of ``vals`` (float64) whose every value is finite and within float32 (the table's dtype:
    beyond it a value would become inf there)."""
    with np.errstate(invalid="ignore"):
        return (np.isfinite(vals) & (np.abs(vals) <= F32_MAX)).all(axis=1)


def _bad_field(raw: bytes, sep: bytes, names, first: int = 1) -> str:
    """Why a row of numbers is unusable: the first field that is not a finite number (fields
    numbered from ``first``: the column of ``raw``'s first field in the line)."""
    tokens = raw.split() if sep == b" " else raw.split(sep)
    for j, t in enumerate(tokens):
        text = t.decode("utf-8", "replace").strip()
        try:
            ok = np.isfinite(float(text)) and abs(float(text)) <= F32_MAX  # the table holds float32
        except ValueError:
            ok = False
        if not ok:
            name = names(j)
            return f"field {j + first} ({name}) is {text!r}, expected a finite number" if text else \
                f"field {j + first} ({name}) is empty, expected a finite number"
    return "cannot be read as numbers"


def _decode(raw: bytes, label: str, line_no: int) -> str:
    return decode_line(raw, label, line_no).strip()


class _ImageCheck:
    """Does the image of a row exist (one ``stat`` per distinct name, for files listed many times)."""

    def __init__(self, root: str):
        self.root = root
        self._seen: dict = {}

    def __call__(self, name: str) -> bool:
        hit = self._seen.get(name)
        if hit is None:
            hit = self._seen[name] = os.path.isfile(os.path.join(self.root, name))
        return hit


def _first_line(path: str) -> bytes:
    """The first non-blank line of ``path`` (at most 1 MiB of it), BOM and ``\\r`` stripped."""
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    for line in head.split(b"\n"):
        if line.strip():
            return line.rstrip(b"\r")
    return b""


def _find_folder(label: str, name: str, levels: int = 3) -> str | None:
    """A folder called ``name`` beside ``label`` or beside one of its ``levels`` parent folders."""
    folder = os.path.dirname(label)
    for _ in range(levels + 1):
        cand = os.path.join(folder, name)
        if os.path.isdir(cand):
            return cand
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return None


def _flush(bad: list, label: str, skips: Skips) -> None:
    """Tell ``skips`` a block's bad lines in line order (strict raises on the first line)."""
    for no, why in sorted(bad, key=lambda item: item[0]):
        skips.add(label, no, why)


def _sorted(skips: Skips) -> list:
    """The skipped rows by line (those without a line, JSON annotations, keep their order)."""
    return sorted(skips.items, key=lambda item: -1 if item["row"] is None else item["row"])


def _empty_table(fmt: str, label: str, root: str, skips: Skips, k: int) -> LandmarkTable:
    return LandmarkTable(np.array([], dtype=str), np.zeros((0, k, 2), np.float32), _sorted(skips), root, fmt, label)


# -------------------------------------------------------------------------------------- WFLW

def _wflw_field(j: int) -> str:
    if j < 2 * _WFLW_POINTS:
        return f"{'xy'[j % 2]}{j // 2}"
    if j < 2 * _WFLW_POINTS + 4:
        return _BOX_NAMES[j - 2 * _WFLW_POINTS]
    if j < _WFLW_VALUES:
        return WFLW_ATTRIBUTES[j - 2 * _WFLW_POINTS - 4]
    return "image path"


def _split_wflw(line: bytes) -> tuple[bytes, bytes, int]:
    """(the numbers, the image path, the field count) of one WFLW line."""
    head, _, path = line.rstrip().rpartition(b" ")
    head = head.strip()
    n = head.count(b" ") + 2 if head else 1
    if b"  " in head or b"\t" in head:
        n = len(head.split()) + 1
        head = b" ".join(head.split())
    return head, path, n


def is_wflw(path: str) -> bool:
    """A WFLW annotation file: its first line holds 206 numbers then an image path; or a folder
    holding exactly one ``list_98pt_rect_attr_*.txt``."""
    if os.path.isdir(path):
        return len(_wflw_lists(path)) == 1
    if not os.path.isfile(path) or path.lower().endswith((".pts", ".json")):
        return False
    head, img, n = _split_wflw(_first_line(path))
    if n != _WFLW_VALUES + 1 or not img:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            vals = np.fromstring(head, dtype=np.float64, sep=" ")
        except (ValueError, DeprecationWarning):
            return False
    return vals.size == _WFLW_VALUES


def _wflw_lists(folder: str) -> list:
    return sorted(n for n in os.listdir(folder) if n.startswith("list_98pt_rect_attr_") and n.endswith(".txt"))


def read_wflw(label, strict: bool = False, images: str | None = None) -> LandmarkTable:
    """Read a WFLW annotation file (``list_98pt_rect_attr_*.txt``; a folder holding one).

    Args:
        label: the annotation file, or a folder holding exactly one.
        strict: raise :class:`DatasetError` on the first bad line instead of skipping it.
        images: the ``WFLW_images`` folder, when it is not found beside the file or its parents.

    Returns:
        LandmarkTable with ``points`` (N, 98, 2), ``boxes`` (N, 4), ``attributes`` (the six flags
        of :data:`WFLW_ATTRIBUTES`, uint8 0/1) and ``lines``. A face per row: an image with several
        faces is listed once per face.
    """
    label = os.path.abspath(os.fspath(label))
    if os.path.isdir(label):
        lists = _wflw_lists(label)
        if len(lists) != 1:
            raise DatasetError(f"{label}: expected one list_98pt_rect_attr_*.txt, found {len(lists)}; pass the file")
        label = os.path.join(label, lists[0])
    if not os.path.isfile(label):
        raise DatasetError(f"{label}: label file not found")
    root = os.path.abspath(images) if images else (_find_folder(label, "WFLW_images") or os.path.dirname(label))
    if not os.path.isdir(root):
        raise DatasetError(f"{label}: the image folder {root} does not exist")
    skips = Skips(strict)
    cap = count_lines(label)
    pts = np.empty((cap, 2 * _WFLW_POINTS), np.float32)
    boxes = np.empty((cap, 4), np.float32)
    flags = np.empty((cap, len(WFLW_ATTRIBUTES)), np.uint8)
    line_nos = np.empty(cap, np.int64)
    names: list[str] = []
    exists = _ImageCheck(root)
    n, start = 0, 1
    with open(label, "rb") as f:
        for lines in line_blocks(f):
            n = _wflw_block(lines, start, label, skips, exists, pts, boxes, flags, line_nos, names, n)
            start += len(lines)
    files = np.char.add(root + os.sep, np.array(names, dtype=str)) if names else np.array([], dtype=str)
    return LandmarkTable(files, pts[:n].reshape(n, _WFLW_POINTS, 2), _sorted(skips), root, "wflw", label,
                         lines=line_nos[:n].copy(), naming="WFLW (98 x, y; box; 6 attributes; path)",
                         boxes=boxes[:n].copy(),
                         attributes={a: flags[:n, i].copy() for i, a in enumerate(WFLW_ATTRIBUTES)})


def _wflw_block(lines, start, label, skips, exists, pts, boxes, flags, line_nos, names, n) -> int:
    heads, paths, nos = [], [], []
    bad: list = []              # (line, reason), told to ``skips`` in line order (strict: the first)
    for i, raw in enumerate(lines):
        line = raw.rstrip(b"\r")
        if not line.strip():
            continue
        no = start + i
        head, path, count = _split_wflw(line)
        if count != _WFLW_VALUES + 1:
            bad.append((no, f"{count} fields, expected {_WFLW_VALUES + 1} (196 coordinates of 98 points, "
                                 "x_min y_min x_max y_max, 6 attribute flags, the image path)"))
            continue
        heads.append(head)
        paths.append(path)
        nos.append(no)
    vals = _numbers(heads, _WFLW_VALUES, b" ")
    box, attr = vals[:, 196:200], vals[:, 200:]
    with np.errstate(invalid="ignore"):
        finite = _usable(vals)
        flag_ok = ((attr == 0) | (attr == 1)).all(axis=1)
        box_ok = (box[:, 2] >= box[:, 0]) & (box[:, 3] >= box[:, 1])
    keep = np.zeros(len(heads), dtype=bool)
    for r in range(len(heads)):
        name = _decode(paths[r], label, nos[r])
        if not finite[r]:
            bad.append((nos[r], f"image {name!r}: " + _bad_field(heads[r], b" ", _wflw_field)))
        elif not flag_ok[r]:
            j = int(np.flatnonzero((attr[r] != 0) & (attr[r] != 1))[0])
            bad.append((nos[r], f"image {name!r}: field {201 + j} ({WFLW_ATTRIBUTES[j]}) is {attr[r, j]:g}, "
                                "expected an attribute flag 0 or 1"))
        elif not box_ok[r]:
            bad.append((nos[r], f"image {name!r}: the box {' '.join(f'{v:g}' for v in box[r])} has x_max < x_min "
                                "or y_max < y_min (expected x_min y_min x_max y_max)"))
        elif not exists(name):
            bad.append((nos[r], f"image {name!r} not found in {exists.root}"))
        else:
            keep[r] = True
            names.append(name)
    rows = np.flatnonzero(keep)
    m = len(rows)
    pts[n:n + m] = vals[rows, :196]
    boxes[n:n + m] = box[rows]
    flags[n:n + m] = attr[rows]
    line_nos[n:n + m] = np.asarray(nos, dtype=np.int64)[rows] if m else 0
    n += m
    _flush(bad, label, skips)
    return n


# -------------------------------------------------------------------------------- COCO JSON

def is_coco_json(path: str) -> bool:
    """A ``.json`` file that opens as a COCO-style keypoint file (``"annotations"`` or
    ``"images"`` among its first MiB)."""
    if not os.path.isfile(path) or not path.lower().endswith(".json"):
        return False
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") and (b'"annotations"' in head or b'"images"' in head)


def _coco_root(label: str, images: str | None) -> str:
    if images:
        return os.path.abspath(images)
    folder = os.path.dirname(label)
    for cand in (os.path.join(folder, "images"), os.path.join(os.path.dirname(folder), "images")):
        if os.path.isdir(cand):
            return cand
    return folder


def read_coco_json(label, strict: bool = False, images: str | None = None) -> LandmarkTable:
    """Read a COCO-style keypoint JSON (mmpose's COFW, AFLW, WFLW and 300-W annotation files).

    One row per annotation, in the file's order: ``points`` from ``keypoints`` (x, y, v triples;
    coordinates as written), ``visible`` = v > 0, ``boxes`` from ``bbox`` (x, y, w, h), ``box_size``
    from ``box_size`` where every annotation has one. An annotation whose point count differs from
    the first one's, whose image is unknown or missing, or whose numbers are not finite is skipped
    naming it (``annotation #i``), or with ``strict`` raises.
    """
    label = os.path.abspath(os.fspath(label))
    try:
        with open(label, "rb") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{label}: label file not found") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError(f"{label}: not a JSON file ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list) \
            or not isinstance(doc.get("images"), list):
        raise DatasetError(f"{label}: expected a COCO-style keypoint JSON: an object with 'images' (id, file_name) "
                           "and 'annotations' (image_id, keypoints, bbox) lists")
    root = _coco_root(label, images)
    skips = Skips(strict)
    files_of: dict = {}
    for i, im in enumerate(doc["images"]):
        if not isinstance(im, dict) or not isinstance(im.get("id"), (int, str)) or isinstance(im.get("id"), bool) \
                or not isinstance(im.get("file_name"), str):
            skips.add(label, None, f"image #{i}: expected an object with 'id' (a number or a string) and 'file_name'")
            continue
        files_of[im["id"]] = im["file_name"]
    anns = doc["annotations"]
    k = next((len(a["keypoints"]) // 3 for a in anns if isinstance(a, dict) and isinstance(a.get("keypoints"), list)
              and a["keypoints"] and len(a["keypoints"]) % 3 == 0), 0)
    if not k:
        return _empty_table("coco", label, root, skips, 0)
    m = len(anns)
    pts = np.empty((m, k, 2), np.float32)
    vis = np.empty((m, k), bool)
    boxes = np.full((m, 4), np.nan, np.float32)
    sizes = np.full(m, np.nan, np.float32)
    names: list[str] = []
    exists = _ImageCheck(root)
    n = 0
    for i, a in enumerate(anns):
        where = f"annotation #{i}" + (f" (id {a.get('id')})" if isinstance(a, dict) and "id" in a else "")
        why, row = _coco_annotation(a, k, files_of)
        if why is None and not exists(row[0]):
            why = f"image {row[0]!r} not found in {root}"
        if why is not None:
            skips.add(label, None, f"{where}: {why}")
            continue
        name, kp, bbox, size = row
        pts[n], vis[n] = kp[:, :2], kp[:, 2] > 0
        if bbox is not None:
            boxes[n] = (bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3])
        if size is not None:
            sizes[n] = size
        names.append(name)
        n += 1
    if not n:
        return _empty_table("coco", label, root, skips, k)
    files = np.char.add(root + os.sep, np.array(names, dtype=str))
    box_arr = boxes[:n].copy() if np.isfinite(boxes[:n]).all() else None
    size_arr = sizes[:n].copy() if np.isfinite(sizes[:n]).all() else None
    return LandmarkTable(files, pts[:n].copy(), skips.items, root, "coco", label,
                         naming=f"COCO-style keypoints ({k} points)", boxes=box_arr, box_size=size_arr,
                         visible=vis[:n].copy())


def _coco_annotation(a, k: int, files_of: dict):
    """(None, (file name, keypoints (k, 3), bbox or None, box_size or None)) or (why, None)."""
    if not isinstance(a, dict):
        return f"expected an object, got {type(a).__name__}", None
    iid = a.get("image_id")
    if not isinstance(iid, (int, str)) or isinstance(iid, bool) or iid not in files_of:
        return f"image_id {a.get('image_id')!r} is not among the file's images", None
    kp = a.get("keypoints")
    if not isinstance(kp, list) or len(kp) != 3 * k:
        got = len(kp) if isinstance(kp, list) else type(kp).__name__
        return f"keypoints has {got} values, expected {3 * k} (x, y, visibility of {k} points)", None
    try:
        arr = np.array(kp, dtype=np.float64).reshape(k, 3)
    except (TypeError, ValueError):
        return "keypoints holds a value that is not a number", None
    if not _usable(arr).all():
        j = int(np.flatnonzero(~_usable(arr))[0])
        return f"keypoint {j} is not a finite number within float32 (the labels' dtype)", None
    bbox = a.get("bbox")
    if bbox is not None:
        try:
            bbox = np.array(bbox, dtype=np.float64)
        except (TypeError, ValueError):
            return "bbox holds a value that is not a number", None
        if bbox.shape != (4,) or not np.isfinite(bbox).all() or (bbox[2:] < 0).any():
            return f"bbox is {a.get('bbox')!r}, expected [x, y, width, height] with width, height >= 0", None
    size = a.get("box_size")
    if size is not None:
        if isinstance(size, list) and len(size) == 1:
            size = size[0]
        if not isinstance(size, (int, float)) or isinstance(size, bool) or not np.isfinite(size) or size <= 0:
            return f"box_size is {a.get('box_size')!r}, expected a positive number", None
    return None, (files_of[a["image_id"]], arr, bbox, size)


# -------------------------------------------------------------------------------- HRNet CSV

_HRNET_META = {5: ("scale", "box_size", "center_w", "center_h"), 4: ("scale", "center_w", "center_h")}


def is_hrnet_csv(path: str) -> bool:
    """An HRNet-Facial-Landmark-Detection CSV: a header whose second column is ``scale`` and which
    names ``center_w`` among the next three."""
    if not os.path.isfile(path) or not path.lower().endswith(".csv"):
        return False
    cells = [c.strip().lower() for c in _first_line(path).decode("utf-8", "replace").split(",")]
    return len(cells) > 5 and cells[1] == "scale" and "center_w" in cells[2:5]


def _hrnet_meta(cells: list, label: str) -> int:
    """How many columns come before the points, the image name's included: 5 (AFLW: box_size) or 4."""
    low = [c.strip().lower() for c in cells]
    if len(low) > 2 and low[2] == "box_size":
        meta = 5
    elif len(low) > 2 and low[2] == "center_w":
        meta = 4
    else:
        meta = 5 if len(low) % 2 else 4               # unnamed columns: meta + 2K
    if (len(low) - meta) % 2 or len(low) - meta < 2:
        raise DatasetError(f"{label}: line 1 (header): {len(low)} columns; expected image_name, "
                           f"{', '.join(_HRNET_META[meta])}, then x, y pairs")
    return meta


def read_hrnet_csv(label, strict: bool = False, images: str | None = None) -> LandmarkTable:
    """Read an HRNet CSV (``face_landmarks_aflw_test.csv`` and the like; see the module docstring).

    Returns:
        LandmarkTable with ``points``, ``boxes`` (the square around ``center_w, center_h`` of side
        ``box_size`` or ``200 * scale``), ``box_size`` (AFLW) and ``lines``.
    """
    label = os.path.abspath(os.fspath(label))
    if not os.path.isfile(label):
        raise DatasetError(f"{label}: label file not found")
    root = image_root(label, images or None)
    header = _first_line(label).decode("utf-8", "replace").split(",")
    meta = _hrnet_meta(header, label)
    width = len(header) - 1
    k = (width - meta + 1) // 2
    skips = Skips(strict)
    cap = count_lines(label)
    vals_out = np.empty((cap, width), np.float32)
    line_nos = np.empty(cap, np.int64)
    names: list[str] = []
    exists = _ImageCheck(root)

    def field(j: int) -> str:
        return (_HRNET_META[meta][j] if j < meta - 1 else f"{'xy'[(j - meta + 1) % 2]}{(j - meta + 1) // 2}")
    n, start, seen_header = 0, 1, False
    with open(label, "rb") as f:
        for lines in line_blocks(f):
            rests, nos, row_names = [], [], []
            bad: list = []
            for i, raw in enumerate(lines):
                line = raw.rstrip(b"\r")
                if not line.strip():
                    continue
                if not seen_header:
                    seen_header = True
                    continue
                no = start + i
                name, _, rest = line.partition(b",")
                count = line.count(b",") + 1
                text = _decode(name, label, no)
                if count != width + 1:
                    bad.append((no, f"image {text!r}: {count} fields, expected {width + 1} (image_name, "
                                         f"{', '.join(_HRNET_META[meta])}, {k} x, y pairs)"))
                    continue
                rests.append(rest)
                nos.append(no)
                row_names.append(text)
            start += len(lines)
            vals = _numbers(rests, width, b",")
            usable = _usable(vals)
            keep = np.zeros(len(rests), dtype=bool)
            for r in range(len(rests)):
                if not usable[r]:
                    bad.append((nos[r], f"image {row_names[r]!r}: " + _bad_field(rests[r], b",", field, 2)))
                elif not exists(row_names[r]):
                    bad.append((nos[r], f"image {row_names[r]!r} not found in {root}"))
                else:
                    keep[r] = True
                    names.append(row_names[r])
            m = int(keep.sum())
            vals_out[n:n + m], line_nos[n:n + m] = vals[keep], np.asarray(nos, np.int64)[keep]
            n += m
            _flush(bad, label, skips)
    if not n:
        return _empty_table("hrnet", label, root, skips, k)
    v = vals_out[:n]
    scale, centre = v[:, 0], v[:, meta - 3:meta - 1]
    size = v[:, 1].copy() if meta == 5 else None
    half = (size if size is not None else 200.0 * scale)[:, None] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)
    files = np.char.add(root + os.sep, np.array(names, dtype=str))
    return LandmarkTable(files, v[:, meta - 1:].reshape(n, k, 2).copy(), _sorted(skips), root, "hrnet", label,
                         lines=line_nos[:n].copy(), naming=f"HRNet CSV ({', '.join(_HRNET_META[meta])}; {k} points)",
                         boxes=boxes, box_size=size)
