"""Inline SVG line charts (no JavaScript, no external assets). Pure: values in, markup out."""

from __future__ import annotations

import html
from collections.abc import Sequence

WIDTH, HEIGHT, PAD = 640, 220, 40


def line_chart(series: Sequence[tuple[str, str, Sequence[float]]], *, x_labels: Sequence[str],
               y_label: str, title: str) -> str:
    """``series``: (name, colour, values) with one value per x label; returns an ``<svg>``."""
    n = max((len(v) for _, _, v in series), default=0)
    top = max((max(v) for _, _, v in series if v), default=0.0) or 1.0

    def x(i: int) -> float:
        return PAD + (WIDTH - 2 * PAD) * (i / max(n - 1, 1))

    def y(v: float) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * (v / top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{html.escape(title)}">',
             f'<title>{html.escape(title)}</title>',
             f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
             f'stroke="#888"/>',
             f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#888"/>',
             f'<text x="4" y="{PAD - 12}" font-size="11">{html.escape(y_label)} '
             f'(max {top:,.2f})</text>']
    for i, label in enumerate(x_labels):
        if i % 3 == 0:
            parts.append(f'<text x="{x(i):.1f}" y="{HEIGHT - PAD + 14}" font-size="10" '
                         f'text-anchor="middle">{html.escape(label)}</text>')
    for k, (name, colour, values) in enumerate(series):
        pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{pts}"'
                     f' data-series="{html.escape(name)}"/>')
        parts.append(f'<text x="{WIDTH - PAD - 120}" y="{PAD - 12 + 14 * k}" font-size="11" '
                     f'fill="{colour}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
