"""``--early-stop N``: the run ends when the validation error has not improved for N epochs."""

import json
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from augkit.cli.train import train as train_cmd
from augkit.train.early_stop import EarlyStop

FAST = ["--backbone", "tiny", "--size", "32", "--batch-size", "8", "--workers", "0", "--quiet", "--threads", "1",
        "--demo-train", "48", "--demo-val", "16"]


class _Trainer(SimpleNamespace):
    def request_stop(self, reason):
        self.stop_reason = self.stop_reason or reason


@pytest.mark.parametrize(("best_epoch", "epoch", "patience", "stops"), [
    (3, 3, 2, False),   # this epoch is the best
    (3, 4, 2, False),   # one epoch without improvement
    (3, 5, 2, True),    # two
    (1, 5, 4, True),
    (1, 5, 5, False),
])
def test_the_hook_stops_after_n_epochs_without_a_better_one(best_epoch, epoch, patience, stops):
    t = _Trainer(cfg=SimpleNamespace(early_stop=patience), stop_reason=None,
                 state=SimpleNamespace(best={"epoch": best_epoch, "score": 0.05, "metric": "nme"}))
    EarlyStop().epoch_end(t, {"epoch": epoch})
    assert (t.stop_reason is not None) == stops
    if stops:
        assert f"for {epoch - best_epoch} epochs" in t.stop_reason and f"epoch {best_epoch}" in t.stop_reason


def test_a_run_with_early_stop_ends_where_the_rule_says(tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(train_cmd, [*FAST, "--epochs", "6", "--early-stop", "1", "--lr", "0.01", "--seed", "3",
                                       "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    history = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    best = summary["best"]["epoch"]
    assert summary["epochs"] == len(history)
    if summary["stopped"]:   # stopped by the hook (here: after epoch 2): the epoch after the best one
        assert summary["stopped"].startswith("early stop") and len(history) == best + 1 < 6
    else:                    # every epoch improved on the one before
        assert len(history) == 6 and best == 6
    assert (out / "best.pt").is_file()


def test_early_stop_is_an_option_with_its_hook_and_may_change_on_resume():
    from augkit.train.config import option_fields
    from augkit.train.loop import RESUME_MAY_CHANGE, hooks_for
    from augkit.train.config import TrainConfig
    f = {f.name: f for f in option_fields()}["early_stop"]
    assert f.default == 0 and f.metadata["hook"] == "augkit.train.early_stop:EarlyStop"
    assert "early_stop" in RESUME_MAY_CHANGE
    assert not any(isinstance(h, EarlyStop) for h in hooks_for(TrainConfig()))
    assert sum(isinstance(h, EarlyStop) for h in hooks_for(TrainConfig(early_stop=3))) == 1
