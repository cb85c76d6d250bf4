"""Moved to :mod:`augkit.data.synthetic` (torch-free demo faces); this name keeps working."""

from augkit.data.synthetic import (
    SyntheticFaces,
    face_geometry,
    make_face,
    render_face,
    template,
)

__all__ = ["SyntheticFaces", "face_geometry", "make_face", "render_face", "template"]
