"""A line chart drawn on the server as SVG: the dashboard runs no script (CSP `default-src 'none'`).

`line_chart` turns per-minute counts into coordinates, grid lines and axis labels; the template
`dashboard/_chart.html` draws them, and `dashboard.css` colours each series by its class.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["Chart", "Line", "Tick", "line_chart"]

WIDTH, HEIGHT = 960, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28


@dataclass(frozen=True)
class Tick:
    """A grid line at `at` (x or y in the SVG's coordinates) with its label."""

    at: float
    label: str


@dataclass(frozen=True)
class Line:
    """One series: its `points` attribute for an SVG polyline, and its total over the window."""

    name: str
    label: str
    points: str
    total: int
    peak: int


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    lines: list[Line]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    first_minute: int
    minutes: int


def line_chart(series: dict[str, tuple[str, list[int]]], first_minute: int, x_every: int = 15) -> Chart:
    """Lay out `series` (name -> (label, counts per minute from `first_minute`, unix time // 60))."""
    minutes = max((len(counts) for _, counts in series.values()), default=0)
    top_value = _nice_ceiling(max((max(counts, default=0) for _, counts in series.values()), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(index: int) -> float:
        return round(LEFT + plot_w * index / max(1, minutes - 1), 1)

    def y(value: int) -> float:
        return round(TOP + plot_h * (1 - value / top_value), 1)

    lines = [
        Line(name, label, " ".join(f"{x(i)},{y(count)}" for i, count in enumerate(counts)), sum(counts),
             max(counts, default=0))
        for name, (label, counts) in series.items()
    ]  # fmt: skip
    y_ticks = [Tick(y(value), str(value)) for value in _steps(top_value)]
    x_ticks = [
        Tick(x(index), datetime.fromtimestamp((first_minute + index) * 60, UTC).strftime("%H:%M"))
        for index in range(minutes)
        if (first_minute + index) % x_every == 0
    ]
    return Chart(WIDTH, HEIGHT, LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM, lines, x_ticks, y_ticks,
                 first_minute, minutes)  # fmt: skip


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... at or above `value` (at least 1: an empty chart)."""
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10


def _steps(top: int) -> list[int]:
    """Round values from 0 to `top` for the horizontal grid lines: 20 -> 0, 5, 10, 15, 20."""
    divisions = 4 if str(top).startswith("2") else 5  # top is 1, 2 or 5 times a power of ten
    return list(range(0, top + 1, max(1, top // divisions)))
