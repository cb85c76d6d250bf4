"""Every YAML / JSON file augkit reads is refused in bounded time and memory when it is hostile:
an alias bomb (a few hundred bytes that expand to 9^9 values), nesting 10,000 deep, a value that
contains itself, a file over the size limit. One line naming the file, whichever option reads it."""

import time

import pytest
from click.testing import CliRunner

from augkit import files
from augkit.cli import main

BOMB = "".join(f"{a}: &{a} [{', '.join([f'*{b}'] * 9) if b else ', '.join(['x'] * 9)}]\n"
               for a, b in zip("abcdefghi", [None, *"abcdefgh"]))
DEEP = "[" * 10_000 + "]" * 10_000 + "\n"


@pytest.fixture
def hostile(tmp_path):
    out = {}
    for name, text in (("bomb", BOMB), ("deep", DEEP), ("self", "a: &a [1, *a]\n")):
        out[name] = tmp_path / f"{name}.yaml"
        out[name].write_text(text)
    return out


def test_read_yaml_refuses_each_within_a_second(hostile):
    expected = {"bomb": "aliases expand to more than", "deep": "nested deeper than 64", "self": "contains itself"}
    for name, path in hostile.items():
        t = time.perf_counter()
        with pytest.raises(ValueError, match=expected[name]) as e:
            files.read_yaml(path)
        assert time.perf_counter() - t < 1.0
        assert str(path) in str(e.value)


def test_aliases_that_nest_deep_without_nesting_in_the_text(tmp_path):
    chain = "".join(f"a{i}: &a{i} [[[[[[[[[[{'*a' + str(i - 1) if i else 1}]]]]]]]]]]\n" for i in range(10))
    p = tmp_path / "chain.yaml"
    p.write_text(chain)  # 10 levels per line in the text, 100 once the aliases are expanded
    with pytest.raises(ValueError, match="chain.yaml: its aliases nest deeper than 64"):
        files.read_yaml(p)
    j = tmp_path / "deep.json"
    j.write_text("[" * 65 + "]" * 65)  # within Python's recursion limit, beyond augkit's
    with pytest.raises(ValueError, match="deep.json: nested deeper than 64"):
        files.read_json(j)


def test_moderate_aliases_and_nesting_still_load(tmp_path):
    p = tmp_path / "ok.yaml"
    p.write_text("base: &b {p: 0.5, limit: 10}\nsteps:\n  - {Rotate: *b}\n  - {Shear: *b}\n" +
                 "deep: " + "[" * 40 + "1" + "]" * 40 + "\n")
    data = files.read_yaml(p)
    assert data["steps"][1]["Shear"] == {"p": 0.5, "limit": 10}


def test_json_too_deep_and_too_large_are_one_line(tmp_path, monkeypatch):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="deep.json: nested too deeply"):
        files.read_json(deep)
    big = tmp_path / "big.yaml"
    big.write_text("x: 1\n" * 100)
    monkeypatch.setattr(files, "MAX_YAML_BYTES", 64)
    with pytest.raises(ValueError, match=r"big.yaml: 500 bytes, more than the 64"):
        files.read_yaml(big)


@pytest.mark.parametrize("args", [
    ["show", "--aug", "{f}", "--out", "{o}"],
    ["show", "--scheme", "{f}", "--out", "{o}"],
    ["train", "--aug", "{f}", "--out", "{o}"],
    ["train", "--scheme", "{f}", "--out", "{o}"],
    ["train", "--config", "{f}", "--out", "{o}"],
    ["predict", "--checkpoint", "{f}", "--data", "{f}", "--tta", "{f}", "--out", "{c}"],
])
@pytest.mark.parametrize("name", ["bomb", "deep"])
def test_every_option_that_reads_a_file_refuses_it(hostile, tmp_path, args, name):
    if args[0] in ("train", "predict", "evaluate"):
        pytest.importorskip("torch")
    f, o = str(hostile[name]), str(tmp_path / "out" / "x.png")
    t = time.perf_counter()
    res = CliRunner().invoke(main, [a.format(f=f, o=o, c=o[:-4] + ".csv") for a in args])
    took = time.perf_counter() - t
    assert res.exit_code in (1, 2), res.output
    assert f in res.output and ("expand to more than" in res.output or "nested deeper" in res.output), res.output
    assert "Traceback" not in res.output and took < 5.0
    assert not (tmp_path / "out").exists()
