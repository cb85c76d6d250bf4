"""Moved to :mod:`augkit.data.samples` (torch-free); this name keeps working."""

from augkit.data.samples import dataset_points, grid_samples

__all__ = ["dataset_points", "grid_samples"]
