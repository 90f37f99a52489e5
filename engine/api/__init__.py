"""The Engine API server: Docker Engine API 1.50 over a unix socket (aiohttp)."""
