"""portside's Textual TUI. It talks the Docker Engine API only, through docker-py."""
