"""Widgets of the TUI, grouped by screen area."""
