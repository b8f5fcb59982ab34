"""The CLI's HTTP client for a running server; errors become one clear line."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from aisre.core.errors import AisreError

if TYPE_CHECKING:
    import httpx


class ApiError(AisreError):
    pass


def auth_headers() -> dict[str, str]:
    """The API key from AISRE_KEY, sent as a bearer token when set."""
    key = os.environ.get("AISRE_KEY", "").strip()
    return {"Authorization": f"Bearer {key}"} if key else {}


def request(
    method: str, url: str, path: str, *, status_in_error: bool = True, headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """Send one request with the API key; a transport error or a 4xx/5xx becomes an ApiError
    carrying the server's own message (``status_in_error`` prefixes the HTTP status)."""
    import httpx  # here, not at import: `aisre --help` need not load an HTTP client

    try:
        response = httpx.request(method, url.rstrip("/") + path, headers={**(headers or {}), **auth_headers()}, **kwargs)
    except httpx.HTTPError as exc:
        raise ApiError(f"cannot reach aisre at {url}: {exc}") from None
    if response.status_code >= 400:
        try:
            message = str(response.json().get("error", response.text))
        except ValueError:
            raise ApiError(f"{response.status_code}: {response.text}") from None
        raise ApiError(f"{response.status_code}: {message}" if status_in_error else message)
    return response


def get_json(url: str, path: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
    """GET ``path`` from the server at ``url`` and return its JSON body."""
    clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
    return request("GET", url, path, params=clean, timeout=timeout).json()


def put_text(url: str, path: str, text: str, content_type: str, timeout: float = 120.0) -> Any:
    """PUT ``text`` to ``path``; a 4xx with spec errors lists every one of them."""
    return request(
        "PUT", url, path, status_in_error=False, content=text.encode(), headers={"Content-Type": content_type},
        timeout=timeout,
    ).json()


def send_json(url: str, method: str, path: str, body: Any = None, timeout: float = 600.0) -> Any:
    """POST/PUT/PATCH/DELETE a JSON body to ``path`` and return the JSON answer; errors become one line."""
    return request(method, url, path, json=body, timeout=timeout).json()


def get_text(url: str, path: str, params: dict[str, Any] | None = None, timeout: float = 60.0) -> str:
    """GET ``path`` as text (e.g. a Markdown document)."""
    return request("GET", url, path, params=params or {}, timeout=timeout).text
