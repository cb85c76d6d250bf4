"""The documentation site (mkdocs.yml, docs/): it builds with warnings as errors, its API reference
has a heading for every public name of augkit, augkit.data, augkit.train and augkit.tta, its CLI
reference names every command and every option `augkit train --help` prints, and its pages look
right in headless Chromium (docs/screenshots.py)."""

from __future__ import annotations

import html
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
API_PAGES = {"augkit": "api/core", "augkit.data": "api/data", "augkit.train": "api/train", "augkit.tta": "api/tta"}
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "mkdocs_click"):
        pytest.importorskip(module, reason="the [docs] extra is not installed")
    pytest.importorskip("torch", reason="the API pages import augkit.train's lazy names (the [train] extra)")
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def _page(site: Path, name: str) -> str:
    return (site / name / "index.html").read_text(encoding="utf-8")


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment)).replace("\xa0", " ").replace("¶", "").strip()


def _headings(page: str) -> list[str]:
    return [_text(h) for h in re.findall(r"<h[1-6]\b[^>]*>(.*?)</h[1-6]>", page, flags=re.DOTALL)]


def _commands(group, prefix=("augkit",)):
    """Every command path under a click group, as click lists them (lazy ones loaded)."""
    import click
    ctx = click.Context(group, info_name=prefix[-1])
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


def _help_options(help_text: str) -> list[str]:
    """The option names in the first column of a click --help (``--amp / --no-amp`` gives both)."""
    names = []
    for line in help_text.split("Options:", 1)[1].splitlines():
        m = re.match(r"^ {2}(-\S.*?)(?: {2,}|$)", line)
        if m:
            names += re.findall(r"(?<![\w-])--?[A-Za-z][\w-]*", m.group(1))
    return names


def test_site_builds_strict_with_every_public_name_and_command(site):
    for package, path in API_PAGES.items():
        page = _page(site, path)
        words = {w for h in _headings(page) for w in re.findall(r"[\w.]+", h)}
        public = importlib.import_module(package).__all__
        missing = [name for name in public if name not in words]
        assert not missing, f"{path}: no heading for {package}.{missing}"
        assert ":::" not in _text(page), f"{path}: an unrendered ::: directive"

    from click.testing import CliRunner

    from augkit.cli import main
    cli_page = _page(site, "cli")
    cli_headings = set(_headings(cli_page))
    paths = [" ".join(path) for path, _ in _commands(main)]
    assert {"augkit train", "augkit tta fit", "augkit scheme infer", "augkit audit"} <= set(paths)
    missing = [p for p in paths if p not in cli_headings]
    assert not missing, f"CLI page: no section for {missing}"

    result = CliRunner().invoke(main, ["train", "--help"], prog_name="augkit", terminal_width=200)
    assert result.exit_code == 0, result.output
    options = _help_options(result.output)
    assert "--data" in options and "--resume" in options and len(options) > 30
    train_section = cli_page.split('id="augkit-train"', 1)[1].split('id="augkit-tta"', 1)[0]
    shown = set(re.findall(r"(?<![\w-])--?[A-Za-z][\w-]*", _text(train_section)))
    missing = [o for o in options if o not in shown]
    assert not missing, f"CLI page, augkit train: options of --help not shown: {missing}"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_screenshot_check_of_three_pages(site, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "screenshots.py"), "--site", str(site),
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert len(list(tmp_path.glob("*.png"))) == 3
