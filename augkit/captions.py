"""Captions over faces: words in OpenCV's Hershey fonts, Latin and Cyrillic, without font files.

OpenCV's Hershey fonts hold ASCII only. Cyrillic capitals that look like Latin ones (А В Е К М Н
О Р С Т Х) are drawn with the Latin glyph; the others with the stroke table below (polylines in a
unit box, top-left origin, written for augkit), at the Hershey glyphs' cap height and stroke
thickness. Cyrillic words are drawn in capitals, as television captions mostly are.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

__all__ = ["FONTS", "WORDS", "render_caption"]

#: the Hershey fonts by name (``Caption(font=...)``)
FONTS = {
    "simplex": cv2.FONT_HERSHEY_SIMPLEX, "plain": cv2.FONT_HERSHEY_PLAIN, "duplex": cv2.FONT_HERSHEY_DUPLEX,
    "complex": cv2.FONT_HERSHEY_COMPLEX, "triplex": cv2.FONT_HERSHEY_TRIPLEX,
    "complex_small": cv2.FONT_HERSHEY_COMPLEX_SMALL, "script_simplex": cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
    "script_complex": cv2.FONT_HERSHEY_SCRIPT_COMPLEX,
}

#: the built-in word list: what captions over face photos say (news tickers, show titles, dates)
WORDS = (
    # Latin
    "BREAKING", "NEWS", "LIVE", "Exclusive", "interview", "today", "Weather", "Sport", "Music", "Award",
    "Premiere", "Festival", "Season", "Episode", "Champion", "Final", "Best", "Friends", "Family", "Love",
    "Story", "Official", "Channel", "Show", "Moscow", "Paris", "London", "Berlin", "2019", "2020", "22:45",
    "HD", "TV", "Report", "guest", "photo", "video", "www.example.com", "#1", "Q&A",
    # Cyrillic
    "НОВОСТИ", "ПРЯМОЙ ЭФИР", "ИНТЕРВЬЮ", "СЕГОДНЯ", "ЭКСКЛЮЗИВ", "СПОРТ", "ПОГОДА", "МОСКВА", "ЖИЗНЬ",
    "ДРУЗЬЯ", "ЛЮБОВЬ", "ФОТО", "ВИДЕО", "ШОУ", "ЧЕМПИОН", "ЦЕНА", "ЮБИЛЕЙ", "ЯРКО", "БЫТЬ", "ГОРОД",
    "ДЕНЬ", "ЗИМА", "ЙОГА", "ФИЛЬМ", "ЭТО", "ЩЕДРО", "СЪЁМКА", "ГОСТЬ", "ВЫПУСК", "ПРЕМЬЕРА",
)

# Cyrillic capitals drawn as their Latin twins
_TWINS = {"А": "A", "В": "B", "Е": "E", "Ё": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C",
          "Т": "T", "Х": "X"}


def _ring(cx: float, cy: float, rx: float, ry: float, n: int = 12) -> list:
    return [(cx + rx * math.cos(2 * math.pi * i / n), cy + ry * math.sin(2 * math.pi * i / n)) for i in range(n + 1)]


_BOWL = [(0.7, 1.0), (1.0, 0.85), (1.0, 0.65), (0.7, 0.5)]   # the lower bowl of Б Ь Ъ Ы
# the other capitals: (advance as a fraction of the cap height, polylines in a unit box, y down)
_STROKES: dict[str, tuple[float, list]] = {
    "Б": (0.75, [[(1.0, 0.0), (0.0, 0.0), (0.0, 1.0), *_BOWL, (0.0, 0.5)]]),
    "Г": (0.65, [[(1.0, 0.0), (0.0, 0.0), (0.0, 1.0)]]),
    "Д": (0.85, [[(0.0, 1.2), (0.0, 1.0), (1.0, 1.0), (1.0, 1.2)], [(0.1, 1.0), (0.3, 0.0), (0.85, 0.0), (0.85, 1.0)]]),
    "Ж": (1.0, [[(0.0, 0.0), (0.5, 0.5), (1.0, 0.0)], [(0.0, 1.0), (0.5, 0.5), (1.0, 1.0)], [(0.5, 0.0), (0.5, 1.0)]]),
    "З": (0.7, [[(0.0, 0.1), (0.2, 0.0), (0.8, 0.0), (1.0, 0.15), (1.0, 0.35), (0.7, 0.5), (0.3, 0.5)],
                [(0.7, 0.5), (1.0, 0.65), (1.0, 0.85), (0.8, 1.0), (0.2, 1.0), (0.0, 0.9)]]),
    "И": (0.8, [[(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)]]),
    "Й": (0.8, [[(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)], [(0.3, -0.15), (0.7, -0.15)]]),
    "Л": (0.8, [[(0.0, 1.0), (0.3, 0.0), (1.0, 0.0), (1.0, 1.0)]]),
    "П": (0.8, [[(0.0, 1.0), (0.0, 0.0), (1.0, 0.0), (1.0, 1.0)]]),
    "У": (0.75, [[(0.0, 0.0), (0.5, 0.6)], [(1.0, 0.0), (0.3, 1.0)]]),
    "Ф": (0.9, [[(0.5, 0.0), (0.5, 1.0)], _ring(0.5, 0.45, 0.5, 0.27)]),
    "Ц": (0.85, [[(0.0, 0.0), (0.0, 1.0), (0.9, 1.0), (0.9, 0.0)], [(0.9, 1.0), (1.0, 1.0), (1.0, 1.2)]]),
    "Ч": (0.75, [[(0.0, 0.0), (0.0, 0.4), (0.2, 0.55), (1.0, 0.55)], [(1.0, 0.0), (1.0, 1.0)]]),
    "Ш": (1.0, [[(0.0, 0.0), (0.0, 1.0), (1.0, 1.0), (1.0, 0.0)], [(0.5, 0.0), (0.5, 1.0)]]),
    "Щ": (1.05, [[(0.0, 0.0), (0.0, 1.0), (0.92, 1.0), (0.92, 0.0)], [(0.46, 0.0), (0.46, 1.0)],
                 [(0.92, 1.0), (1.0, 1.0), (1.0, 1.2)]]),
    "Ъ": (0.85, [[(0.0, 0.0), (0.25, 0.0), (0.25, 1.0), *_BOWL, (0.25, 0.5)]]),
    "Ы": (0.95, [[(0.0, 0.0), (0.0, 1.0), (0.5, 1.0), (0.7, 0.85), (0.7, 0.65), (0.5, 0.5), (0.0, 0.5)],
                 [(1.0, 0.0), (1.0, 1.0)]]),
    "Ь": (0.7, [[(0.0, 0.0), (0.0, 1.0), *_BOWL, (0.0, 0.5)]]),
    "Э": (0.75, [[(0.0, 0.1), (0.3, 0.0), (0.7, 0.0), (1.0, 0.3), (1.0, 0.7), (0.7, 1.0), (0.3, 1.0), (0.0, 0.9)],
                 [(0.35, 0.5), (1.0, 0.5)]]),
    "Ю": (1.0, [[(0.0, 0.0), (0.0, 1.0)], [(0.0, 0.5), (0.3, 0.5)], _ring(0.65, 0.5, 0.35, 0.5)]),
    "Я": (0.75, [[(1.0, 1.0), (1.0, 0.0), (0.3, 0.0), (0.0, 0.15), (0.0, 0.35), (0.3, 0.5), (1.0, 0.5)],
                 [(0.4, 0.5), (0.0, 1.0)]]),
}


def _runs(text: str):
    """The line cut into runs: ``(True, ascii_text)`` for Hershey glyphs (Cyrillic twins mapped to
    Latin), ``(False, capital)`` for each Cyrillic capital of the stroke table."""
    run: list[str] = []
    for ch in text:
        up = ch.upper()
        if up in _STROKES:
            if run:
                yield True, "".join(run)
                run = []
            yield False, up
        else:
            run.append(_TWINS.get(up, ch))
    if run:
        yield True, "".join(run)


def _stroke_width(ch: str, cap: float) -> float:
    return _STROKES[ch][0] * cap * 0.8 + 0.3 * cap


def _line_width(text: str, font: int, scale: float, cap: float, thickness: int) -> float:
    return sum(cv2.getTextSize(t, font, scale, thickness)[0][0] if hershey else _stroke_width(t, cap)
               for hershey, t in _runs(text))


def _draw_line(canvas: np.ndarray, text: str, x: float, base: float, font: int, scale: float,
               cap: float, thickness: int, stroke: int) -> None:
    """Draw one line of text with its baseline at ``base`` from ``x`` on (white on ``canvas``):
    one ``cv2.putText`` per run of Hershey glyphs, polylines for the stroke-table capitals. Glyphs
    advance as at ``thickness`` whatever the ``stroke`` drawn (the outline pass lines up)."""
    for hershey, t in _runs(text):
        if hershey:
            cv2.putText(canvas, t, (int(round(x)), int(round(base))), font, scale, 255, stroke, cv2.LINE_AA)
            x += cv2.getTextSize(t, font, scale, thickness)[0][0]
            continue
        advance, lines = _STROKES[t]
        w, pad = advance * cap * 0.8, 0.15 * cap
        polys = [np.round(np.array([(x + pad + u * w, base - cap + v * cap) for u, v in line]) * 16).astype(np.int32)
                 for line in lines]
        cv2.polylines(canvas, polys, False, 255, stroke, cv2.LINE_AA, shift=4)
        x += w + 2 * pad


@functools.lru_cache(maxsize=None)
def _cap_height(font: int) -> int:
    """The height of a capital at scale 1 (asked once per font, not per caption)."""
    return cv2.getTextSize("H", font, 1.0, 1)[0][1]


def _masks(lines, font: int, cap: float, thickness: int, outline: int):
    """(fill, outline) uint8 masks of the text block and its size."""
    scale = cap / _cap_height(font)
    pad = int(math.ceil(0.5 * cap + thickness + outline))
    widths = [_line_width(t, font, scale, cap, thickness) for t in lines]
    w = int(math.ceil(max(widths))) + 2 * pad
    h = int(math.ceil(cap * (1.6 * len(lines) - 0.6))) + 2 * pad
    fill = np.zeros((h, w), np.uint8)
    edge = np.zeros((h, w), np.uint8) if outline else None
    for i, (t, tw) in enumerate(zip(lines, widths)):
        x = pad + 0.5 * (max(widths) - tw)
        base = pad + cap * (1.6 * i + 1.0)
        _draw_line(fill, t, x, base, font, scale, cap, thickness, thickness)
        if edge is not None:
            _draw_line(edge, t, x, base, font, scale, cap, thickness, thickness + 2 * outline)
    return fill, edge


def render_caption(image: np.ndarray, v: dict) -> np.ndarray:
    """``image`` with the caption of the values ``v`` (see :class:`augkit.photometric.Caption`)
    composited over its colour channels; a new array of the same dtype and channels."""
    from .functional import to_dtype, dtype_range
    h, w = image.shape[:2]
    cap = max(3.0, float(v["height"]) * h)
    thickness = max(1, int(round(cap * float(v["weight"]))))
    outline = int(round(cap * float(v["outline"])))
    fill, edge = _masks(v["text"], FONTS[v["font"]], cap, thickness, outline)
    bh, bw = fill.shape
    rx0, ry0, rx1, ry1 = v["region"]
    cx, cy = (rx0 + v["u"] * (rx1 - rx0)) * w - 0.5, (ry0 + v["v"] * (ry1 - ry0)) * h - 0.5
    a = math.radians(float(v["angle"]))
    c, s = math.cos(a), math.sin(a)
    # rotate the block about its centre (counter-clockwise on screen), centre it on (cx, cy)
    m = np.array([[c, s, 0.0], [-s, c, 0.0]])
    m[:, 2] = [cx, cy] - m[:, :2] @ [0.5 * (bw - 1), 0.5 * (bh - 1)]
    # the rotated block's bounding box in the image: only that window is warped and blended
    corners = np.array([[0.0, 0.0, 1.0], [bw - 1.0, 0.0, 1.0], [0.0, bh - 1.0, 1.0], [bw - 1.0, bh - 1.0, 1.0]]) @ m.T
    x0, y0 = max(0, int(math.floor(corners[:, 0].min())) - 1), max(0, int(math.floor(corners[:, 1].min())) - 1)
    x1, y1 = min(w, int(math.ceil(corners[:, 0].max())) + 2), min(h, int(math.ceil(corners[:, 1].max())) + 2)
    if x1 <= x0 or y1 <= y0:
        return image.copy()             # the caption fell outside the frame
    m[:, 2] -= (x0, y0)
    top = np.float32(dtype_range(image.dtype))
    out_full = image.copy()
    win = out_full[y0:y1, x0:x1]
    color = win if win.ndim == 2 or win.shape[2] != 4 else win[..., :3]
    out = color.astype(np.float32)
    if out.ndim == 2:
        out = out[..., None]
    for mask, rgb in ((edge, v["outline_color"]), (fill, v["color"])):
        if mask is None:
            continue
        alpha = cv2.warpAffine(mask, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR).astype(np.float32)[..., None]
        alpha *= np.float32(1.0 / 255.0)
        paint = np.array(rgb, np.float32) * (top / 255.0)
        if out.shape[2] == 1:
            paint = np.array([paint @ np.array([0.299, 0.587, 0.114], np.float32)], np.float32)
        out += (paint - out) * alpha
    res = to_dtype(out, image.dtype)
    color[...] = res[..., 0] if color.ndim == 2 else res
    return out_full
