"""The one place the version lives (read by pyproject and `portside --version`)."""

__version__ = "0.1.0"
# The Docker Engine API versions the daemon serves.
API_VERSION = "1.50"
MIN_API_VERSION = "1.24"
