"""Steps own their structure: containers list their children, flips are asked of the structure,
a new container needs no edit elsewhere. (The import rules: ``test_architecture.py``.)"""


import numpy as np
import pytest

import augkit as ak
from augkit.steps import REGISTRY, Step, step_from_dict



# ----------------------------------------------------------------------------- step structure

def test_containers_list_their_children_and_leaves_have_none():
    flip, resize = ak.HFlip(), ak.Resize(8, 8)
    one = ak.OneOf([flip, resize])
    some = ak.Sometimes(one)
    pipe = ak.Compose([some, resize])
    assert pipe.children() == (some, resize)
    assert some.children() == (one,)
    assert one.children() == (flip, resize)
    assert flip.children() == () and resize.children() == ()


def test_may_flip_is_asked_of_the_structure_at_any_depth():
    deep = ak.Compose([ak.Resize(8, 8), ak.Sometimes(ak.OneOf([ak.Blur(), ak.Compose([ak.HFlip(p=0.0)])]))])
    assert deep.may_flip and deep.can_flip  # a flip that may never run still needs a scheme
    assert not ak.Compose([ak.OneOf([ak.Blur(), ak.Resize(4, 4)])]).may_flip
    with pytest.raises(ValueError, match="scheme"):
        deep(np.zeros((8, 8, 3), np.uint8), np.zeros((68, 2)), rng=np.random.default_rng(0))


@pytest.mark.parametrize(("steps", "expected"), [
    ([], 0),
    ([ak.HFlip()], 1),
    ([ak.HFlip(), ak.Affine(rotate=5), ak.HFlip()], 2),
    ([ak.HFlip(p=0.0), ak.Resize(6, 6)], 0),
    ([ak.Sometimes(ak.HFlip(), p=1.0), ak.OneOf([ak.Compose([ak.HFlip()])])], 2),
    ([ak.Sometimes(ak.HFlip(), p=0.0), ak.OneOf([ak.HFlip()], p=0.0)], 0),
])
def test_fixed_flips_agrees_with_a_real_call(steps, expected):
    pipe = ak.Compose(steps, points_unordered=True)
    assert pipe.fixed_flips() == expected
    assert pipe(np.zeros((6, 6, 3), np.uint8)).record["flips"] == expected


@pytest.mark.parametrize("step", [ak.HFlip(p=0.5), ak.OneOf([ak.HFlip(), ak.Blur()]), ak.Affine(rotate=(0, 5))])
def test_fixed_flips_refuses_a_random_step(step):
    with pytest.raises(ValueError, match="random"):
        ak.Compose([step], points_unordered=True).fixed_flips()


def test_view_flips_reads_the_structure_without_running_an_image(monkeypatch):
    from augkit.tta.views import View, preset_views

    views = preset_views("full")
    expected = [v.pipeline(np.zeros((6, 6, 3), np.uint8)).record["flips"] % 2 == 1 for v in views]

    def no_run(*a, **k):
        raise AssertionError("View.flips ran the pipeline")

    monkeypatch.setattr(ak.Compose, "__call__", no_run)
    assert [v.flips for v in views] == expected and sum(expected) == len(views) // 2
    # a box crop cannot run on an image without a box, yet its view still answers
    assert View.from_steps("crop-flip", [ak.CropBox(), ak.HFlip()]).flips
    assert not View.from_steps("crop", [ak.CropBox()]).flips


@pytest.fixture()
def twice():
    """A container written the way a user would add one: one class, nothing else edited."""

    class Twice(Step):
        """Run ``step`` two times in a row."""

        def __init__(self, step, p=1.0):
            super().__init__(p)
            self.step = step

        def children(self):
            return (self.step,)

        @property
        def deterministic(self):
            return self.p in (0.0, 1.0) and (self.p == 0.0 or self.step.deterministic)

        def fixed_flips(self):  # the default counts each child once; this one runs its child twice
            return 0 if self.p == 0.0 else 2 * self.step.fixed_flips()

        def contribute(self, plan, rng, entry):
            if entry is None:
                return [self.step.walk(plan, rng), self.step.walk(plan, rng)]
            return [self.step.walk(plan, rng, e, replay=True) for e in entry]

        @classmethod
        def from_args(cls, args, where):
            return cls(**{**args, "step": step_from_dict(args["step"], f"{where}.step")})

        def to_dict(self):
            return {"type": "Twice", "step": self.step.to_dict()}

    yield Twice
    REGISTRY.pop("Twice", None)  # the registry is global: leave it as it was


def test_a_new_container_needs_no_edit_elsewhere(twice, face):
    image, points = face
    pipe = ak.Compose([twice(ak.HFlip()), twice(ak.Affine(rotate=(-10, 10)))], scheme="ibug68")
    assert "Twice" in REGISTRY and pipe.can_flip and pipe.children()[0].fixed_flips() == 2
    out = pipe(image, points, rng=np.random.default_rng(3))
    assert out.record["flips"] == 2 and len(out.record["steps"][1]) == 2
    np.testing.assert_allclose(out.invert(out.points), points, atol=1e-6)  # the walk fused it into one matrix
    again = ak.Compose.from_dict(pipe.to_dict())  # the dict form round-trips through the registry
    assert type(again.steps[0]).__name__ == "Twice" and again.to_dict() == pipe.to_dict()
    replayed = again.replay(out.record, image, points)
    assert replayed.image.tobytes() == out.image.tobytes()
    np.testing.assert_array_equal(replayed.points, out.points)


def test_unknown_type_names_the_place_and_the_known_types():
    with pytest.raises(ValueError, match=r"pipeline\.steps\[1\]: unknown step type 'Warp'; known: .*Affine.*OneOf"):
        ak.Compose.from_dict({"type": "Compose", "steps": [{"type": "HFlip"}, {"type": "Warp"}]})
    with pytest.raises(ValueError, match=r"pipeline\.steps\[0\]\.step: bad arguments for Blur"):
        ak.Compose.from_dict({"type": "Compose", "steps": [{"type": "Sometimes", "step": {"type": "Blur", "x": 1}}]})
