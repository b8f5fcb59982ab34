"""The OpenAPI document, built from the route table and the typed models the routes return.

Each handler carries its docstring (summary, parameters, request body, per-status
descriptions, in YAML as Starlette reads it) and an :func:`operation` mark naming its tag and
its response model (a TypedDict in models.py). The response schemas are generated from those
models; security follows ``auth.required_roles``, the same function the middleware asks;
every error answer has the one Error schema. A route that is not marked is described from its
docstring alone, so the schema test names it.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import (
    Any,
    Literal,
    NotRequired,
    Required,
    TypeVar,
    Union,
    get_args,
    get_origin,
    is_typeddict,
)

from starlette.routing import BaseRoute
from starlette.schemas import SchemaGenerator

from aisre.present.api import models
from aisre.present.api.auth import COOKIE, required_roles

F = TypeVar("F", bound=Callable[..., Any])

TAGS: list[dict[str, str]] = [
    {"name": "ingest", "description": "What machines send: OTLP traces, evaluation scores, changes, Alertmanager alerts."},
    {"name": "journeys", "description": "Journeys, their runs and traces."},
    {"name": "slos", "description": "SLO specs, status, error budgets, burn rates, alert episodes and replay."},
    {"name": "cost", "description": "Cost attribution, spike explanation, prices, budgets and rate-limit headroom."},
    {"name": "incidents", "description": "Incidents, their timeline, action items and postmortems; recorded changes."},
    {"name": "gate", "description": "The release gate: verdicts for a candidate against a baseline, and their history."},
    {"name": "check", "description": "The telemetry checker: what the spans a tenant sent lack, as findings and coverage."},
    {"name": "scorecards", "description": "Reliability scorecards per journey, service and team, their levels and a facts export."},
    {"name": "catalog", "description": "The service catalog discovered from the traces, and its Backstage export."},
    {"name": "readiness", "description": "Launch-readiness checklists evaluated from facts, with an exit code for CI."},
    {"name": "policy", "description": "Agent policies: apply and list versioned policy sets, decide inline, decision records and violations over traces."},
    {"name": "metrics", "description": "The OTLP metric series a tenant has sent: names, labels, kinds, when seen."},
    {"name": "admin", "description": "API keys, the audit log and retention (admin keys only)."},
    {"name": "meta", "description": "Health, store counts, Prometheus metrics and this document."},
]
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "An API key: 'Authorization: Bearer <key>' (aisre keys create)."},
    "header": {"type": "apiKey", "in": "header", "name": "x-aisre-key", "description": "An API key in the x-aisre-key header."},
    "cookie": {"type": "apiKey", "in": "cookie", "name": COOKIE, "description": "The UI's login cookie (set by /login)."},
}
_ERRORS = {
    400: "Bad request: a parameter or the body is wrong; the message names it.",
    401: "No API key, or an unknown, revoked or expired one (auth on).",
    403: "The key's role may not do this.",
    404: "Not found.",
    409: "Conflicts with the current state.",
    413: "The body is too large.",
}


@dataclass(frozen=True)
class Operation:
    """What the OpenAPI document says of one handler beyond its docstring."""

    tag: str
    response: Any = None  # a TypedDict (JSON), or None with ``media_type`` for text answers
    status: int = 200
    media_types: tuple[str, ...] = ("application/json",)


def operation(
    tag: str, response: Any = None, *, status: int = 200, media_type: str | tuple[str, ...] = "application/json"
) -> Callable[[F], F]:
    """Mark a route handler with its tag and response model (or text media types) for the OpenAPI document."""
    media_types = (media_type,) if isinstance(media_type, str) else media_type

    def mark(fn: F) -> F:
        fn.__aisre_operation__ = Operation(tag, response, status, media_types)  # type: ignore[attr-defined]
        return fn

    return mark


# The OTLP receiver lives below present/ (receive/), so it is described here by path.
_BY_PATH = {
    ("/v1/traces", "post"): Operation("ingest", models.ExportTraceServiceResponse,
                                      media_types=("application/json", "application/x-protobuf")),
    ("/v1/metrics", "post"): Operation("ingest", models.ExportMetricsServiceResponse,
                                       media_types=("application/json", "application/x-protobuf")),
}
# Answers that are not the operation's JSON model: protobuf, and YAML documents (a Backstage
# catalog is a stream of entities).
_BINARY = {"application/x-protobuf": {"type": "string", "format": "binary"}, "application/yaml": {"type": "string"}}


class _Schemas:
    """JSON Schemas (OpenAPI 3.0 dialect) for Python types, TypedDicts as named components."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, tp: Any) -> dict[str, Any]:
        """The schema of ``tp``; a TypedDict becomes a $ref to its component."""
        if tp is Any or tp is object:
            return {}
        if isinstance(tp, str):
            raise TypeError(f"unresolved annotation {tp!r}")
        origin = get_origin(tp)
        if origin in (Required, NotRequired):
            return self.ref(get_args(tp)[0])
        if origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            nullable = len(members) < len(get_args(tp))
            if len(members) == 1:
                inner = self.ref(members[0])
            else:
                inner = {"anyOf": [self.ref(m) for m in members]}
            if not nullable:
                return inner
            if "$ref" in inner:  # 3.0: siblings of $ref are ignored, so wrap it
                return {"allOf": [inner], "nullable": True}
            return {**inner, "nullable": True} if inner else {}
        if origin is Literal:
            values = list(get_args(tp))
            kind = {str: "string", int: "integer", bool: "boolean"}[type(values[0])]
            return {"type": kind, "enum": values}
        if origin is list:
            (item,) = get_args(tp) or (Any,)
            return {"type": "array", "items": self.ref(item)}
        if origin is dict:
            _, value = get_args(tp) or (str, Any)
            return {"type": "object", "additionalProperties": self.ref(value)}
        if is_typeddict(tp):
            name = tp.__name__
            if name not in self.components:
                self.components[name] = {}  # placeholder against recursion
                self.components[name] = self._object(tp)
            return {"$ref": f"#/components/schemas/{name}"}
        simple: dict[Any, dict[str, Any]] = {str: {"type": "string"}, bool: {"type": "boolean"}, int: {"type": "integer"},
                                             float: {"type": "number"}, type(None): {"nullable": True}}
        if tp in simple:
            return dict(simple[tp])
        raise TypeError(f"no JSON Schema for {tp!r}")

    def _object(self, tp: Any) -> dict[str, Any]:
        hints = typing.get_type_hints(tp, include_extras=True)
        required = sorted(tp.__required_keys__)
        # Closed: a field a lower layer adds without its model fails the schema test, so the
        # document cannot fall behind what the routes send.
        schema: dict[str, Any] = {
            "type": "object", "properties": {k: self.ref(v) for k, v in hints.items()}, "additionalProperties": False,
        }
        if required:
            schema["required"] = required
        doc = (tp.__doc__ or "").strip()
        if doc and not doc.startswith(tp.__name__ + "("):
            schema["description"] = doc
        return schema


def _operation_of(path: str, method: str, fn: Callable[..., Any]) -> Operation | None:
    found = getattr(fn, "__aisre_operation__", None)
    return found if isinstance(found, Operation) else _BY_PATH.get((path, method))


def _parse_docstring(fn: Callable[..., Any]) -> dict[str, Any]:
    parsed = SchemaGenerator({}).parse_docstring(fn)
    return dict(parsed) if isinstance(parsed, dict) else {}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aisre")
    except PackageNotFoundError:
        return "0.0.0"


def build_spec(routes: Sequence[BaseRoute], version: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.0.3 document for ``routes`` (the API routes; UI pages are left out)."""
    schemas = _Schemas()
    error = schemas.ref(models.Error)
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in SchemaGenerator({}).get_endpoints(list(routes)):
        path, method, fn = endpoint.path, endpoint.http_method, endpoint.func
        doc = _parse_docstring(fn)
        op = _operation_of(path, method, fn)
        responses: dict[Any, Any] = {int(k): dict(v) for k, v in (doc.pop("responses", None) or {}).items()}
        if op is not None:
            doc["tags"] = [op.tag]
            ok = responses.setdefault(op.status, {"description": "OK"})
            schema = schemas.ref(op.response) if op.response is not None else {"type": "string"}
            ok["content"] = {media: {"schema": _BINARY.get(media, schema)} for media in op.media_types}
        doc["operationId"] = _operation_id(fn, method, path)
        need = required_roles(method.upper(), path)
        if need is None:
            doc["security"] = []
        else:
            doc["security"] = [{"bearer": []}, {"header": []}, {"cookie": []}]
            roles = " or ".join(sorted({*need, "admin"}))
            doc["description"] = (doc.get("description", "").rstrip() + f"\n\nNeeds a key with role {roles} when auth is on.").strip()
            responses.setdefault(401, {"description": _ERRORS[401]})
            responses.setdefault(403, {"description": _ERRORS[403]})
        if doc.get("parameters") or doc.get("requestBody"):
            responses.setdefault(400, {"description": _ERRORS[400]})
        if "{" in path:
            responses.setdefault(404, {"description": _ERRORS[404]})
        for status, answer in responses.items():
            if 400 <= status < 600 and "content" not in answer and path not in ("/v1/traces", "/v1/metrics"):
                answer["content"] = {"application/json": {"schema": error}}
        doc["responses"] = {str(k): responses[k] for k in sorted(responses)}
        _path_parameters(doc, path)
        paths.setdefault(path, {})[method] = doc
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "aisre API", "version": version or _version(),
            "description": "Journey SLOs, error budgets, cost and incidents from OpenTelemetry traces. "
                           "Times are RFC 3339 (UTC); money is USD.",
        },
        "tags": TAGS,
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.components.items())), "securitySchemes": SECURITY_SCHEMES},
    }


def _operation_id(fn: Callable[..., Any], method: str, path: str) -> str:
    name = getattr(fn, "__name__", "")
    if name and name != "<lambda>" and not name.startswith("_"):
        return name
    return method + re.sub(r"[^A-Za-z0-9]+", "_", path).rstrip("_")


def _path_parameters(doc: dict[str, Any], path: str) -> None:
    """Every {name} in the path is a required string parameter unless the docstring says more."""
    declared = {p.get("name") for p in doc.get("parameters", []) if p.get("in") == "path"}
    for name in re.findall(r"{(\w+)}", path):
        if name not in declared:
            doc.setdefault("parameters", []).insert(0, {"name": name, "in": "path", "required": True, "schema": {"type": "string"}})


def spec_for(app: Any) -> dict[str, Any]:
    """The document for a Starlette app's routes, built on first use and kept on the app."""
    spec = getattr(app.state, "openapi", None)
    if spec is None:
        spec = app.state.openapi = build_spec(app.routes)
    return dict(spec)
