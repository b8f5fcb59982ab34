"""The CLI's HTTP client for a running server; errors become one clear line."""

from __future__ import annotations

import os
from typing import Any

import httpx

from aisre.core.errors import AisreError


class ApiError(AisreError):
    pass


def auth_headers() -> dict[str, str]:
    """The API key from AISRE_KEY, sent as a bearer token when set."""
    key = os.environ.get("AISRE_KEY", "").strip()
    return {"Authorization": f"Bearer {key}"} if key else {}


def get_json(url: str, path: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
    """GET ``path`` from the server at ``url`` and return its JSON body."""
    clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
    try:
        response = httpx.get(url.rstrip("/") + path, params=clean, headers=auth_headers(), timeout=timeout)
    except httpx.HTTPError as exc:
        raise ApiError(f"cannot reach aisre at {url}: {exc}") from None
    if response.status_code >= 400:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise ApiError(f"{response.status_code}: {message}")
    return response.json()


def put_text(url: str, path: str, text: str, content_type: str, timeout: float = 120.0) -> Any:
    """PUT ``text`` to ``path``; a 4xx with spec errors lists every one of them."""
    try:
        response = httpx.put(url.rstrip("/") + path, content=text.encode(), headers={"Content-Type": content_type, **auth_headers()}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ApiError(f"cannot reach aisre at {url}: {exc}") from None
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            raise ApiError(f"{response.status_code}: {response.text}") from None
        raise ApiError(str(body.get("error", response.text)))
    return response.json()


def send_json(url: str, method: str, path: str, body: Any = None, timeout: float = 600.0) -> Any:
    """POST/PUT/PATCH/DELETE a JSON body to ``path`` and return the JSON answer; errors become one line."""
    try:
        response = httpx.request(method, url.rstrip("/") + path, json=body, headers=auth_headers(), timeout=timeout)
    except httpx.HTTPError as exc:
        raise ApiError(f"cannot reach aisre at {url}: {exc}") from None
    if response.status_code >= 400:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise ApiError(f"{response.status_code}: {message}")
    return response.json()


def get_text(url: str, path: str, params: dict[str, Any] | None = None, timeout: float = 60.0) -> str:
    """GET ``path`` as text (e.g. a Markdown document)."""
    try:
        response = httpx.get(url.rstrip("/") + path, params=params or {}, headers=auth_headers(), timeout=timeout)
    except httpx.HTTPError as exc:
        raise ApiError(f"cannot reach aisre at {url}: {exc}") from None
    if response.status_code >= 400:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise ApiError(f"{response.status_code}: {message}")
    return response.text
