"""A stats graph that is cheap to paint and repaints only when its picture changes."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from rich.segment import Segment
from rich.style import Style
from textual.color import Color
from textual.strip import Strip
from textual.widgets import Sparkline

BARS = "▁▂▃▄▅▆▇█"
COLOUR_STEPS = 64


class StatsGraph(Sparkline):
    """Draws what Textual's Sparkline draws, but with bars scaled from zero to the window's maximum (the label
    beside it names that peak), coloured from `sparkline--min-color` to `sparkline--max-color`, fed by plot() and
    painted through the line API.

    Why not the Sparkline itself: it paints through Rich, a segment per column each with a style of its own that
    Textual then re-styles and encodes one by one, about 10 ms for 80x3 cells; at a sample a second for seven
    graphs that alone was several percent of a core. Here a picture is a height ratio per column; runs of equal
    cells are merged into one segment, and the strips are kept until the picture changes. And it often does not:
    a constant series draws the same flat line whatever its value or length, so plot() repaints only when the
    ratios, the size or the colours changed."""

    _picture: tuple[object, ...] | None = None
    _strips: list[Strip] | None = None
    _drawn_for: tuple[object, ...] | None = None
    _styles_for: tuple[object, ...] | None = None
    _styles: dict[int, Style]

    def plot(self, values: Sequence[float]) -> bool:
        """Show these values; returns whether the graph will be repainted."""
        data = list(values)
        self.set_reactive(Sparkline.data, data)
        # No data and a single value draw fixed pictures; from two values on, each column's bar height and colour
        # shade say it all.
        width, height = self.size
        shapes: object
        if len(data) >= 2 and min(data) == max(data):
            # the common idle case (no IO, same PIDs and memory): no need to look at columns; bars stand on zero,
            # so a constant series is an empty line at 0 and a full one above it
            shapes = ("flat", data[0] > 0)
        else:
            bar_steps = len(BARS) * height - 1
            shapes = tuple((int(r * bar_steps), int(r * COLOUR_STEPS)) for r in self._columns_of(data, width))
        picture = (width, height, min(len(data), 2), shapes)
        if picture == self._picture:
            return False
        self._picture = picture
        self._strips = None
        self.refresh()
        return True

    def _columns_of(self, data: list[float], width: int) -> tuple[float, ...]:
        """The height ratio (0..1) drawn in each column, as Textual's renderer computes it."""
        if len(data) < 2 or width <= 0:
            return ()
        # bars stand on zero (on the minimum only for a series that goes below it): a change of a few kilobytes
        # on megabytes draws as the small change it is instead of filling the whole height
        lo, hi = min(0.0, min(data)), max(data)
        extent = hi - lo or 1
        summary = self.summary_function
        # Textual's buckets (SparklineRenderable._buckets) in integers: it takes Fractions, 50x slower
        n = len(data)
        bounds = [(n * b) // width for b in range(width + 1)]
        ratios = [(summary(data[a:z]) - lo) / extent for a, z in itertools.pairwise(bounds) if z > a]
        # column i draws bucket int(i * step): stretched when there are fewer buckets than columns
        columns = []
        index, step = 0.0, len(ratios) / width
        for _ in range(width):
            columns.append(ratios[int(index)])
            index += step
        return tuple(columns)

    def notify_style_update(self) -> None:
        self._strips = None  # a theme or CSS change: new colours
        super().notify_style_update()

    def render_line(self, y: int) -> Strip:
        width, height = self.size
        base = self.rich_style
        _, background = self.background_colors
        low = background + (self.min_color or self.get_component_styles("sparkline--min-color").color)
        high = background + (self.max_color or self.get_component_styles("sparkline--max-color").color)
        key = (width, height, base, low, high)
        if self._strips is None or self._drawn_for != key:
            data = list(self.data or [])
            columns = self._columns_of(data, width) if len(data) >= 2 else ()
            if self._styles_for != key[2:]:
                self._styles_for, self._styles = key[2:], {}
            self._strips = self._draw(width, height, base, low, high, data, columns, self._styles)
            self._drawn_for = key
        return self._strips[y] if 0 <= y < len(self._strips) else Strip.blank(width, base)

    @staticmethod
    def _draw(width: int, height: int, base: Style, low: Color, high: Color, data: list[float],
              columns: tuple[float, ...], styles: dict[int, Style]) -> list[Strip]:
        def style(ratio: float) -> Style:
            # COLOUR_STEPS shades between the two colours: no eye tells them from exact blends, and styles that
            # repeat are made once and let equal neighbours merge into one segment
            level = int(ratio * COLOUR_STEPS)
            s = styles.get(level)
            if s is None:
                s = styles[level] = base + Style(color=low.blend(high, level / COLOUR_STEPS).rich_color)
            return s

        def strip(cells: list[tuple[str, Style]]) -> Strip:
            segments: list[Segment] = []
            text, current = "", None
            for char, st in cells:
                if st is current:
                    text += char
                    continue
                if text:
                    segments.append(Segment(text, current))
                text, current = char, st
            if text:
                segments.append(Segment(text, current))
            return Strip(segments, width)

        if not data:  # Textual's Sparkline: a flat line in the minimum colour
            rows = [[(" ", base)] * width for _ in range(height - 1)]
            return [strip(r) for r in rows] + [strip([("▁", style(0.0))] * width)]
        if len(data) == 1:
            return [strip([("█", style(1.0))] * width) for _ in range(height)]
        segments_per_bar = len(BARS) * height - 1
        out = []
        for row in reversed(range(height)):
            floor, ceiling = row * len(BARS), (row + 1) * len(BARS)
            cells = []
            for ratio in columns:
                index = int(ratio * segments_per_bar)
                if index < floor:
                    cells.append((" ", base))
                elif index >= ceiling:
                    cells.append(("█", style(ratio)))
                else:
                    cells.append((BARS[index % len(BARS)], style(ratio)))
            out.append(strip(cells))
        return out
