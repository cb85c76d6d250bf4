"""Moved to :mod:`augkit.data` (the torch-free data layer); these names keep working.

    from augkit.data import read_dataset, read_test_points   # the new home
"""

from augkit.data import (
    FORMAT_NAMES,
    FORMATS,
    IMAGE_EXTENSIONS,
    OUTSIDE_MARGIN,
    DatasetError,
    LabelFormat,
    LandmarkTable,
    detect_format,
    format_names,
    read_competition,
    read_csv,
    read_dataset,
    read_pts,
    read_test_points,
    register,
    verify_images,
)

__all__ = [
    "FORMATS", "FORMAT_NAMES", "IMAGE_EXTENSIONS", "OUTSIDE_MARGIN", "DatasetError", "LabelFormat", "LandmarkTable",
    "detect_format", "format_names", "read_competition", "read_csv", "read_dataset", "read_pts", "read_test_points",
    "register", "verify_images",
]
