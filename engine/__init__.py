"""portside's container engine. Nothing below this package imports Textual."""

from engine.version import __version__

__all__ = ["__version__"]
