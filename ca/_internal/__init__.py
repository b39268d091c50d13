"""Helpers shared by the public modules of ``ca``; nothing here is public API."""
