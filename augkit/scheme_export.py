"""A scheme's flip pairs in the form other libraries read (``augkit scheme export --to ...``), so
that their users get the pairs augkit knows, or infers for a dense layout.

All three libraries use augkit's own convention: after the x coordinates are mirrored, the points
are reordered so that flipped point ``i`` is mirrored point ``perm[i]``
(:attr:`augkit.schemes.Scheme.perm`, an involution: a point on the midline maps to itself).

- ``ultralytics``: the dataset YAML's ``kpt_shape`` and ``flip_idx`` (``RandomFlip`` takes
  ``keypoints[:, flip_idx]``).
- ``mmpose``: a dataset-info Python file (``dataset_info = dict(...)``, the form of mmpose's
  ``configs/_base_/datasets/*.py``): one ``keypoint_info`` entry per point named ``kpt-i`` with
  its ``swap`` partner (empty on the midline), from which mmpose derives ``flip_indices``;
  ``joint_weights`` 1 and no OKS ``sigmas`` (augkit has none to give).
- ``albumentations``: AlbumentationsX's ``label_mapping`` (2.0.12 and later) as a Python file: the
  points labelled ``0..K-1`` in a ``keypoint_labels`` field, ``HorizontalFlip`` mapping each
  label to its partner; AlbumentationsX then also reorders the points by their new labels.
  albumentations 2.0.x has no ``label_mapping``: it flips coordinates only.

Stdlib only.
"""

from __future__ import annotations

from augkit.errors import InputError

__all__ = ["TARGETS", "export_flip_pairs"]

TARGETS = ("albumentations", "mmpose", "ultralytics")


def export_flip_pairs(scheme, to: str) -> str:
    """The text of ``scheme``'s flip pairs for the library ``to`` (one of :data:`TARGETS`)."""
    if to not in TARGETS:
        raise InputError(f"--to {to!r}: expected one of {', '.join(TARGETS)}")
    perm = [int(j) for j in scheme.perm]
    head = (f"# augkit scheme {scheme.name!r}: {scheme.n_points} points, {len(scheme.flip_pairs)} flip pairs, "
            f"{sum(1 for i, j in enumerate(perm) if i == j)} on the midline (written by `augkit scheme export`)\n")
    if to == "ultralytics":
        return (head + "# in the dataset YAML: flipped point i = mirrored point flip_idx[i]\n"
                f"kpt_shape: [{scheme.n_points}, 2]\nflip_idx: [{', '.join(map(str, perm))}]\n")
    if to == "mmpose":
        return head + _mmpose(scheme, perm)
    return head + _albumentationsx(perm)


def _mmpose(scheme, perm: list) -> str:
    colour = {"left": "[255, 0, 0]", "right": "[0, 0, 255]", "mid": "[255, 255, 0]"}
    lines = ["# mmpose dataset info (configs/_base_/datasets/ form): metainfo=dict(from_file=THIS_FILE)",
             "dataset_info = dict(", f"    dataset_name={scheme.name!r},", "    paper_info=dict(),",
             "    keypoint_info={"]
    for i, j in enumerate(perm):
        side = "mid" if i == j else ("left" if i < j else "right")
        swap = f"kpt-{j}" if i != j else ""
        lines.append(f"        {i}: dict(name='kpt-{i}', id={i}, color={colour[side]}, type='', swap='{swap}'),")
    lines += ["    },", "    skeleton_info={},", f"    joint_weights=[1.0] * {scheme.n_points},", "    sigmas=[])", ""]
    return "\n".join(lines)


def _albumentationsx(perm: list) -> str:
    mapping = ", ".join(f"{i}: {j}" for i, j in enumerate(perm))
    return ("# AlbumentationsX >= 2.0.12 (albumentations 2.0.x has no label_mapping). Use:\n"
            "#   A.Compose([...], keypoint_params=A.KeypointParams(coord_format='xy', label_fields=['keypoint_labels'],\n"
            "#             remove_invisible=False, label_mapping=label_mapping))(image=..., keypoints=points, "
            f"keypoint_labels=list(range({len(perm)})))\n"
            "# after a flip the keypoints array comes back in this order already (point i = the mirrored partner\n"
            "# of point i): read the array by index, not the returned keypoint_labels\n"
            f"label_mapping = {{'HorizontalFlip': {{'keypoint_labels': {{{mapping}}}}}}}\n")
