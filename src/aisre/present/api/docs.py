"""The API reference page (/docs): our own template over the OpenAPI document, no CDN, so it
works on servers without internet access."""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

_METHODS = ("get", "put", "post", "patch", "delete")


@functools.lru_cache(maxsize=1)
def _env() -> Environment:
    return Environment(loader=PackageLoader("aisre.present.api", "templates"), autoescape=select_autoescape(["html"]))


def type_label(schema: dict[str, Any]) -> str:
    """A short type for a schema: string, integer | null, array of Run, Incident…"""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "allOf" in schema:
        label = " & ".join(type_label(s) for s in schema["allOf"])
    elif "anyOf" in schema:
        label = " | ".join(type_label(s) for s in schema["anyOf"])
    elif schema.get("type") == "array":
        label = "array of " + type_label(schema.get("items", {}))
    elif schema.get("type") == "object" and "additionalProperties" in schema:
        label = "map of " + type_label(schema["additionalProperties"])
    elif "enum" in schema:
        label = " | ".join(str(v) for v in schema["enum"])
    else:
        label = str(schema.get("type", "any"))
    return label + (" | null" if schema.get("nullable") else "")


def _fields(schema: dict[str, Any], components: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The model name and its fields (name, type, required) for a response schema."""
    name = type_label(schema)
    target = components.get(name, schema) if "$ref" in schema else schema
    required = set(target.get("required", []))
    fields = [{"name": k, "type": type_label(v), "required": k in required, "link": _referenced(v)}
              for k, v in (target.get("properties") or {}).items()]
    return name, fields


def _referenced(schema: dict[str, Any]) -> str | None:
    """The model a field holds (directly, in an array or map, or nullable), for a link."""
    for inner in (schema, schema.get("items") or {}, schema.get("additionalProperties") or {}, *(schema.get("allOf") or [])):
        if isinstance(inner, dict) and "$ref" in inner:
            return str(inner["$ref"]).rsplit("/", 1)[-1]
    return None


def operations_by_tag(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The document's operations grouped by tag, in the document's tag order."""
    components = spec.get("components", {}).get("schemas", {})
    groups: dict[str, list[dict[str, Any]]] = {t["name"]: [] for t in spec.get("tags", [])}
    for path, item in spec["paths"].items():
        for method in _METHODS:
            op = item.get(method)
            if op is None:
                continue
            responses = []
            for status, answer in op.get("responses", {}).items():
                content = answer.get("content") or {}
                media, answer_body = next(iter(content.items()), (None, None))
                model, fields = _fields(answer_body.get("schema", {}), components) if answer_body else ("", [])
                responses.append({"status": status, "description": answer.get("description", ""),
                                  "media": media, "model": model, "fields": fields if status.startswith("2") else []})
            body = (op.get("requestBody") or {}).get("content") or {}
            groups.setdefault((op.get("tags") or ["other"])[0], []).append({
                "id": op["operationId"], "method": method.upper(), "path": path,
                "summary": op.get("summary", ""), "description": op.get("description", ""),
                "parameters": [{"name": p["name"], "in": p["in"], "required": p.get("required", False),
                                "type": type_label(p.get("schema", {})), "description": p.get("description", "")}
                               for p in op.get("parameters", [])],
                "body": [{"media": m, "type": type_label(b.get("schema", {}))} for m, b in body.items()],
                "secured": bool(op.get("security")), "responses": responses,
            })
    return [{"name": t["name"], "description": t.get("description", ""), "operations": ops}
            for t in spec.get("tags", []) for name, ops in groups.items() if name == t["name"] and ops]


def render_docs(spec: dict[str, Any]) -> str:
    """The reference page for ``spec``."""
    components = spec.get("components", {}).get("schemas", {})
    models = [{"name": name, **dict(zip(("model", "fields"), _fields({"$ref": f"#/components/schemas/{name}"}, components), strict=True)),
               "description": schema.get("description", "")} for name, schema in components.items()]
    return _env().get_template("docs.html").render(
        info=spec["info"], tags=operations_by_tag(spec), models=models,
        schemes=spec.get("components", {}).get("securitySchemes", {}),
    )
