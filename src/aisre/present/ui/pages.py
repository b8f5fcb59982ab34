"""Web UI pages (server-rendered)."""

from __future__ import annotations

from starlette.routing import BaseRoute


def ui_routes() -> list[BaseRoute]:
    """Routes of the web UI."""
    return []
