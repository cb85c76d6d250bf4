"""Each training option is declared once: the `augkit train` (and `augkit audit`) options are the
TrainConfig fields, with the same defaults and choices; `--config FILE` reruns or varies a run."""

import dataclasses
import json
import subprocess
import sys
import textwrap

import pytest
from augkit.cli.train import NON_FIELD_OPTIONS, config_from_args
from augkit.cli.train import train as train_cmd
from augkit.models import LOSSES
from augkit.train.config import (
    PERSON_REGEX,
    TrainConfig,
    option_fields,
    resolve_config,
)
from augkit.data import FORMAT_NAMES
from click.testing import CliRunner

FAST = ["--backbone", "tiny", "--size", "32", "--batch-size", "8", "--workers", "0", "--quiet", "--threads", "1"]


def _params(command) -> dict:
    return {p.name: p for p in command.params}


def test_train_options_are_the_config_fields_with_their_defaults_and_choices():
    params = _params(train_cmd)
    fields = {f.name: f for f in option_fields()}
    assert set(params) == set(fields) | set(NON_FIELD_OPTIONS)
    for name, f in fields.items():
        p = params[name]
        assert p.default == f.default, name
        assert tuple(getattr(p.type, "choices", ()) or ()) == (f.metadata["choices"] or ()), name
        assert p.help == f.metadata["help"], name
    assert tuple(params["format"].type.choices) == tuple(FORMAT_NAMES)
    assert tuple(params["loss"].type.choices) == tuple(LOSSES)
    assert PERSON_REGEX in params["val_group"].help


def test_choice_tables_have_one_home():
    pytest.importorskip("torch")
    from augkit.models import losses
    from augkit.train import data
    assert losses.LOSSES is LOSSES and data.PERSON_REGEX is PERSON_REGEX


def test_option_spellings_and_ranges_kept():
    params = _params(train_cmd)
    assert params["channels_last"].opts == ["--channels-last"]
    assert params["channels_last"].secondary_opts == ["--no-channels-last"]
    assert params["batch_size"].opts == ["--batch-size"] and params["no_aug"].is_flag
    assert (params["size"].type.min, params["size"].type.max) == (16, 2048)
    assert params["ema"].type.min_open and params["ema"].type.max_open
    r = CliRunner().invoke(train_cmd, ["--size", "8"])
    assert r.exit_code == 2 and "--size" in r.output
    r = CliRunner().invoke(train_cmd, ["--lr", "fast"])
    assert r.exit_code == 2 and "neither a number nor 'auto'" in r.output


def test_the_defaults_of_parsed_options_are_the_config_defaults():
    cfg, _ = config_from_args([])
    assert cfg == TrainConfig()


def test_audit_takes_the_train_options_but_those_it_sets_itself():
    from augkit.cli.audit import audit
    params = _params(audit)
    own = {"folds", "tta", "run_dir", "resume", "threshold", "write_fixed", "png", "data", "out", "use_sigma"}
    generated = {f.name for f in option_fields()} - {"data", "out", "exclude", "lr_find"}
    shown = {n for n, p in params.items() if not p.hidden}
    assert shown == own | generated
    for name in generated:
        assert params[name].default == _params(train_cmd)[name].default


def test_resolve_config_checks_choices_and_ranges_of_every_field():
    with pytest.raises(ValueError, match=r"--loss must be mse, l1, smooth-l1 or wing, got 'l2'"):
        resolve_config(TrainConfig(loss="l2", workers=0))
    with pytest.raises(ValueError, match=r"--trim must be between 0 and 0.9, got 0.95"):
        resolve_config(TrainConfig(trim=0.95, workers=0))
    with pytest.raises(ValueError, match=r"--optimizer must be adamw, adam or sgd, got 'lion'"):
        resolve_config(TrainConfig(optimizer="lion", workers=0))
    assert resolve_config(TrainConfig(workers=0)).size == 64


def _config_error(tmp_path, text, name="opts.yaml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    r = CliRunner().invoke(train_cmd, ["--config", str(p)])
    lines = [line for line in r.output.splitlines() if line.strip()]
    return r, lines, str(p)


@pytest.mark.parametrize("text, words", [
    ("sise: 32\n", ["unknown key 'sise'", "did you mean 'size'?"]),
    ("colour: red\n", ["unknown key 'colour'", "not an augkit train option"]),
    ("size: 8\n", ["size:", "16<=x<=2048"]),
    ("loss: l2\n", ["loss:", "'l2' is not one of"]),
    ("seed: null\n", ["seed: null is not allowed (expected int)"]),
    ("lr: -0.5\n", ["lr:", "the learning rate must be a positive number"]),
    ("device: yes\n", ["device: expected str, got True"]),
    ("epochs: [1, 2]\n", ["epochs: expected int"]),
    ("epochs: 2.5\n", ["epochs: expected int"]),
    ("- size\n", ["expected a mapping of augkit train options"]),
    ("size: [\n", ["not valid YAML/JSON"]),
])
def test_bad_config_file_is_one_line_naming_file_and_key(tmp_path, text, words):
    r, lines, path = _config_error(tmp_path, text)
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and lines[0].startswith("Error: ") and path in lines[0], r.output
    assert all(w in lines[0] for w in words), r.output
    assert "Traceback" not in r.output


def test_bad_json_config_names_the_line(tmp_path):
    r, lines, path = _config_error(tmp_path, '{"size": 32,\n "epochs": }\n', name="opts.json")
    assert r.exit_code == 2 and len(lines) == 1 and f"{path}: not valid JSON: line 2" in lines[0], r.output


def test_config_file_values_are_defaults_the_command_line_overrides(tmp_path):
    p = tmp_path / "opts.yaml"
    p.write_text("batch-size: 4\nepochs: 3\nlr: auto\nchannels_last: false\nloss: wing\nema: 0.99\n", encoding="utf-8")
    cfg, _ = config_from_args(["--config", str(p), "--epochs", "5", "--loss", "mse"])
    assert (cfg.batch_size, cfg.epochs, cfg.lr, cfg.channels_last, cfg.loss, cfg.ema) == \
        (4, 5, "auto", False, "mse", 0.99)
    # an option given on the command line at its default value still overrides the file
    cfg, _ = config_from_args(["--config", str(p), "--channels-last", "--loss", "smooth-l1"])
    assert (cfg.channels_last, cfg.loss) == (True, "smooth-l1")


def test_rerun_from_a_runs_config_reproduces_it(tmp_path):
    pytest.importorskip("torch")
    first = tmp_path / "first"
    args = [*FAST, "--demo-train", "16", "--demo-val", "8", "--epochs", "1", "--seed", "3", "--loss", "wing",
            "--no-channels-last", "--lr", "0.004", "--out", str(first)]
    r = CliRunner().invoke(train_cmd, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    again = tmp_path / "again"
    r = CliRunner().invoke(train_cmd, ["--config", str(first / "config.json"), "--out", str(again)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    a, b = (json.loads((d / "config.json").read_text(encoding="utf-8")) for d in (first, again))
    assert a.pop("out") != b.pop("out")
    assert a == b
    assert set(a) | {"out"} == {f.name for f in dataclasses.fields(TrainConfig)}
    # the run's folder itself is never the rerun's: its own config.json gives no --out
    cfg, _ = config_from_args(["--config", str(first)])
    assert cfg.out is None and cfg.seed == 3 and cfg.loss == "wing"


def test_train_command_line_imports_no_torch():
    code = textwrap.dedent("""
        import sys
        for name in ("torch", "torchvision", "pandas"):
            sys.modules[name] = None
        from augkit.cli.train import train
        from augkit.cli.audit import audit
        assert {p.name for p in train.params} >= {"loss", "format", "val_group"}
    """)
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
