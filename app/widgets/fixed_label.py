"""A label for values that change every second: repainting it must not re-lay out the screen."""

from __future__ import annotations

from textual.widgets import Static


class FixedLabel(Static):
    """A label whose size does not depend on its text (the stylesheet gives it a width and a height), so set()
    repaints it alone (`update(layout=False)`), and only when the text changed. A Static's update() re-lays out
    the whole screen by default, which at one sample a second was most of an idle app's CPU."""

    def __init__(self, text: str = "", **kwargs: str) -> None:
        super().__init__(text, **kwargs)  # type: ignore[arg-type]
        self.text = text

    def set(self, text: str) -> None:
        if text != self.text:
            self.text = text
            self.update(text, layout=False)
