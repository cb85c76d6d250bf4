"""Look at the built documentation site in a real browser: build it (``mkdocs build --strict``) into a
temporary folder, serve it on a free localhost port, take a headless Chromium screenshot of three
pages (the front page, the Python API reference, the CLI reference) and check each one.

    python docs/screenshots.py                    # PNGs in a temporary folder, printed in the table
    python docs/screenshots.py --out shots/       # keep them there
    python docs/screenshots.py --site SITE_DIR    # check an already built site

A page passes when its screenshot has the window's size and is not blank (grey-level standard
deviation and the share of pixels off the background colour above a floor), and its HTML shows
no unrendered Markdown or mkdocstrings/mkdocs-click directive, no Python error text, the site
navigation and an article of some length. Prints one row per page and exits 1 when any page
fails, 2 when Chromium is missing.
"""

from __future__ import annotations

import argparse
import html
import http.client
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
PAGES = {"front page": "", "Python API (augkit.tta)": "api/tta/", "CLI reference": "cli/"}
WIDTH, HEIGHT = 1280, 2000
MIN_STD = 12.0      # grey-level standard deviation of a page with text, tables and the header bar
MIN_INK = 0.02      # share of pixels that differ from the page's most common colour
MIN_TEXT = 500      # characters of text in the page's article (header and navigation excluded)

# text that must not reach a reader: unrendered directives, markdown, reST roles, Python errors
BROKEN = [
    (re.compile(r"^\s*:::", re.MULTILINE), "unrendered ::: directive"),
    (re.compile(r"public-api:"), "unexpanded public-api marker"),
    (re.compile(r"^\s*\|\s*-{3,}", re.MULTILINE), "unrendered table"),
    (re.compile(r"^\s*```", re.MULTILINE), "unrendered code fence"),
    (re.compile(r":(?:class|func|meth|mod|data|attr):`"), "raw reST role"),
    (re.compile(r"Traceback \(most recent call last\)|\b(?:ModuleNotFound|Import|Attribute|Key)Error\b"),
     "Python error text"),
]


def build(site: Path) -> None:
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
                   cwd=ROOT, check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/" + path)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def serve(site: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(site)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while True:
        try:
            get(port, "")
            return server, port
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError("the local web server did not start") from None
            time.sleep(0.1)


def screenshot(url: str, png: Path, profile: Path) -> None:
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={png}",
                    f"--window-size={WIDTH},{HEIGHT}", url],
                   check=True, timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def visible_text(page: str) -> str:
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.DOTALL | re.IGNORECASE)
    page = re.sub(r"<pre\b.*?</pre>", " ", page, flags=re.DOTALL | re.IGNORECASE)   # code may show anything
    return html.unescape(re.sub(r"<br\s*/?>|</(?:p|li|h\d|tr|div)>", "\n", page)).replace("\xa0", " ")


def check_html(page: str) -> list[str]:
    problems = [why for pattern, why in BROKEN if pattern.search(re.sub(r"<[^>]+>", "", visible_text(page)))]
    if page.count('class="md-nav__link') < 10:
        problems.append("site navigation missing")
    article = re.search(r"<article\b.*?</article>", page, flags=re.DOTALL)
    if article is None or len(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", article.group(0)))) < MIN_TEXT:
        problems.append("page content missing or nearly empty")
    return problems


def check_png(png: Path) -> tuple[list[str], float, float, tuple[int, int]]:
    image = cv2.imread(str(png), cv2.IMREAD_COLOR)
    if image is None:
        return ["no readable PNG"], 0.0, 0.0, (0, 0)
    h, w = image.shape[:2]
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    std = float(grey.std())
    colours, counts = np.unique(image.reshape(-1, 3), axis=0, return_counts=True)
    ink = 1.0 - counts.max() / counts.sum()
    problems = []
    if (w, h) != (WIDTH, HEIGHT):
        problems.append(f"size {w}x{h}, expected {WIDTH}x{HEIGHT}")
    if std < MIN_STD or ink < MIN_INK:
        problems.append("blank or nearly blank")
    return problems, std, ink, (w, h)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="folder for the PNGs (default: a temporary folder, kept)")
    ap.add_argument("--site", type=Path, help="an already built site (default: build one now)")
    args = ap.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} not found (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="augkit-shots-"))
    out = args.out or work / "png"
    out.mkdir(parents=True, exist_ok=True)
    site = args.site or work / "site"
    try:
        if args.site is None:
            build(site)
        server, port = serve(site)
        rows, failed = [], False
        try:
            for i, (name, path) in enumerate(PAGES.items()):
                url = f"http://127.0.0.1:{port}/{path}"
                png = out / f"{i}_{(path.strip('/').replace('/', '_') or 'index')}.png"
                status, page = get(port, path)
                problems = [] if status == 200 else [f"HTTP {status}"]
                problems += check_html(page)
                screenshot(url, png, work / f"profile{i}")
                png_problems, std, ink, (w, h) = check_png(png)
                problems += png_problems
                failed |= bool(problems)
                rows.append((name, "/" + path, f"{w}x{h}", f"{std:.1f}", f"{ink:.1%}",
                             "ok" if not problems else "FAIL: " + "; ".join(problems), str(png)))
        finally:
            server.terminate()
            server.wait(timeout=10)
    finally:   # keep only the PNGs (and nothing at all here when --out is given)
        shutil.rmtree(work / "site", ignore_errors=True)
        for profile in work.glob("profile*"):
            shutil.rmtree(profile, ignore_errors=True)
        if args.out is not None:
            shutil.rmtree(work, ignore_errors=True)
    header = ("page", "path", "PNG", "grey std", "ink", "result", "screenshot")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
