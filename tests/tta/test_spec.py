"""Views, presets and spec files: round trips and clear errors."""

import numpy as np
import pytest

import augkit as ak
from augkit.tta import PRESETS, SpecError, TTASpec, View, get_spec, load_spec, preset_views, save_spec


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_fixed_pipelines(name):
    views = preset_views(name)
    assert views[0].name == "identity" and not views[0].pipeline.steps
    assert len({v.name for v in views}) == len(views)
    assert len({v.key() for v in views}) == len(views)
    for v in views:
        assert v.pipeline.deterministic
    flips = sum(v.flips for v in views)
    assert flips == (0 if name == "none" else len(views) // 2)


def test_preset_sizes():
    assert {k: len(preset_views(k)) for k in PRESETS} == {"none": 1, "flip": 2, "flip-rot": 6, "flip-scale": 6,
                                                         "full": 24}


@pytest.mark.parametrize("per_landmark", [False, True])
def test_spec_round_trip(tmp_path, per_landmark):
    views = preset_views("flip-rot") + [View.from_steps("dark", [ak.BrightnessContrast(brightness=-0.1)], 0.5)]
    w = np.random.default_rng(0).uniform(0, 1, (len(views) * 2, 68) if per_landmark else len(views) * 2)
    spec = TTASpec(views, weights=w, models=["a.pt", "b.pt"], name="fitted")
    for ext in ("yaml", "json"):
        path = tmp_path / f"spec.{ext}"
        save_spec(spec, path)
        back = load_spec(path)
        assert [v.key() for v in back.views] == [v.key() for v in views]
        assert [v.name for v in back.views] == [v.name for v in views]
        np.testing.assert_allclose(back.weights, w, atol=1e-6)
        assert back.models == ["a.pt", "b.pt"] and back.merge == "mean"
        np.testing.assert_allclose(back.member_weights(2, 68).sum(axis=0), 1.0)


def test_spec_with_preset_and_extra_views(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("preset: flip\nmerge: trimmed\ntrim: 0.1\nviews:\n  - name: blur\n    steps: [{type: Blur, sigma: 1.0}]\n"
                    "    weight: 0.5\n")
    spec = load_spec(path)
    assert [v.name for v in spec.views] == ["identity", "hflip", "blur"]
    assert spec.merge == "trimmed" and spec.trim == 0.1 and spec.view_weights.tolist() == [1, 1, 0.5]
    assert get_spec(str(path)).views[2].name == "blur"


BAD = [
    ("- just a list\n", "expected a mapping"),
    ("views: []\nextra: 1\n", "unknown field(s) ['extra']"),
    ("name: x\n", "views: missing"),
    ("views: {type: HFlip}\n", "views: expected a list"),
    ("views:\n  - {type: HFlip}\n", "views[0]: unknown field(s) ['type']"),
    ("views:\n  - steps: []\n  - steps: [{type: Hflip}]\n", "views[1].steps[0]: unknown step type 'Hflip'"),
    ("views:\n  - steps: [{type: Affine, rotat: 5}]\n", "views[0].steps[0]: bad arguments for Affine"),
    ("views:\n  - steps: [{type: Affine, rotate: [-5, 5]}]\n", "views[0]: a TTA view must be fixed"),
    ("views:\n  - steps: [{type: HFlip, p: 0.5}]\n", "views[0]: a TTA view must be fixed"),
    ("views:\n  - steps: []\n    weight: -1\n", "views[0].weight: must be a non-negative number"),
    ("views:\n  - steps: []\nmerge: mode\n", "merge: must be one of mean, median, trimmed"),
    ("views:\n  - steps: []\nmerge: trimmed\ntrim: 0.7\n", "trim: must be a fraction"),
    ("preset: ful\n", "preset: unknown TTA preset 'ful'"),
    ("preset: flip\nweights: [0.5, 0.3, 0.2]\n", "weights.values: expected 2 entries"),
    ("preset: flip\nweights: {kind: per_view, values: [[1, 2], [3, 4]]}\n", "kind is per_view but the values are lists"),
    ("preset: flip\nweights: {values: [1, -1]}\n", "non-negative"),
    ("preset: flip\nweights: {models: [a.pt, b.pt], values: [1, 1]}\n", "expected 4 entries (2 model(s) x 2 views)"),
    ("preset: flip\nweights: {value: [1, 1]}\n", "weights: unknown field(s) ['value']"),
    ("views: [\n", "not valid YAML"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m[:30] for _, m in BAD])
def test_bad_spec_files_give_clear_errors(tmp_path, text, message):
    path = tmp_path / "bad_spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as e:
        load_spec(path)
    assert str(path) in str(e.value), str(e.value)
    assert message in str(e.value), str(e.value)


def test_missing_spec_and_unknown_preset():
    with pytest.raises(SpecError, match="no such file"):
        load_spec("/nonexistent/spec.yaml")
    with pytest.raises(SpecError, match="neither a preset"):
        get_spec("fliprot")


def test_weights_for_another_ensemble_are_refused():
    spec = TTASpec(preset_views("flip"), weights=np.ones(4), source="s.yaml")
    with pytest.raises(SpecError, match="s.yaml: weights: fitted for 2 model"):
        spec.member_weights(1, 68)
    with pytest.raises(SpecError, match="per-landmark weights for 5 landmarks"):
        TTASpec(preset_views("flip"), weights=np.ones((2, 5)), source="s.yaml").member_weights(1, 68)
