"""augkit.data: the torch-free data layer (numpy and OpenCV only; no torch, no pandas).

Modules, bottom up:

- ``table``: :class:`LandmarkTable` (files, float32 (N, K, 2) points, skipped rows),
  :class:`DatasetError`, :data:`PERSON_REGEX`.
- ``parser``: the fast block parser of delimited label files (straight into one float32 array).
- ``delimited``, ``pts``: the built-in label formats (competition ``landmarks.csv``, plain CSV,
  300-W ``.pts``).
- ``public``: the public benchmarks' label files: WFLW's ``list_98pt_rect_attr_*.txt`` (points,
  box, six attribute flags), the COCO-style keypoint JSON mmpose distributes COFW / AFLW / WFLW in,
  HRNet's CSVs (AFLW-19 with its ``box_size``); boxes, box sizes, attributes and visibility go to
  the table's optional arrays.
- ``formats``: the format registry (name, detect, read). A new label format is one
  :func:`register` call: ``read_dataset``, detection and the ``--format`` choices
  (:data:`FORMAT_NAMES`) follow.
- ``verify``: :func:`verify_images` (decode or read headers, drop corrupt images and labels far
  outside them).
- ``test_points``: :func:`read_test_points` (the competition's ``test_points.csv``, a TSV).
- ``samples``, ``synthetic``: dataset samples and the synthetic demo faces for ``augkit show``.
- ``run_folder``: the typed run folder (every file of a training run, read and written in one
  place); imported as ``augkit.run_folder``.

``augkit.train`` and ``augkit.tta`` stand on this package; it imports nothing from them.

    from augkit.data import read_dataset, read_test_points
    table = read_dataset("data/train")          # format detected
    table.points.shape                           # (N, K, 2) float32, 0-based OpenCV pixels
"""

from augkit.io import IMAGE_EXTENSIONS

from .delimited import read_competition, read_csv
from .formats import (
    FORMAT_NAMES,
    LabelFormat,
    detect_format,
    format_names,
    read_dataset,
    register,
)
from .public import WFLW_ATTRIBUTES, read_coco_json, read_hrnet_csv, read_wflw
from .pts import read_pts
from .samples import dataset_points, grid_samples
from .table import PERSON_REGEX, DatasetError, LandmarkTable
from .test_points import read_test_points
from .verify import OUTSIDE_MARGIN, verify_images

__all__ = [
    "FORMAT_NAMES",
    "IMAGE_EXTENSIONS",
    "OUTSIDE_MARGIN",
    "PERSON_REGEX",
    "WFLW_ATTRIBUTES",
    "DatasetError",
    "LabelFormat",
    "LandmarkTable",
    "dataset_points",
    "detect_format",
    "format_names",
    "grid_samples",
    "read_coco_json",
    "read_competition",
    "read_csv",
    "read_dataset",
    "read_hrnet_csv",
    "read_pts",
    "read_test_points",
    "read_wflw",
    "register",
    "verify_images",
]
