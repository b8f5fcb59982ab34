"""The Catalog page: services, their journeys and dependencies as a server-rendered SVG graph
(journeys → services → models, vector stores, tools, databases, HTTP hosts), and per service its
ownership and each dependency's calls, errors and latency."""

from __future__ import annotations

import math
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from aisre.present.api.catalog import DEFAULT_SINCE, catalog_document
from aisre.present.ui.pages import _page, _render

SINCE_CHOICES = ("1h", "24h", "7d", "30d", "all")
COL_X = (10, 290, 570)
NODE_W, NODE_H, GAP = 210, 26, 10
KIND_LABEL = {"model": "model", "vector_store": "vector store", "tool": "tool", "database": "database",
              "http": "HTTP", "service": "service"}


def graph(doc: dict[str, Any]) -> dict[str, Any]:
    """Nodes in three columns and the edges between them, with widths by call volume."""
    journeys = [j["name"] for j in doc["journeys"]]
    services = [s["name"] for s in doc["services"]]
    deps: dict[tuple[str, str], dict[str, Any]] = {}
    for s in doc["services"]:
        for d in s["dependencies"]:
            if d["kind"] == "service":
                continue
            label = f"{d['provider']}/{d['name']}" if d["provider"] else d["name"]
            entry = deps.setdefault((d["kind"], label), {"kind": d["kind"], "label": label, "calls": 0, "errors": 0})
            entry["calls"] += d["calls"]
            entry["errors"] += d["errors"]
    order = ("model", "vector_store", "tool", "database", "http")
    dep_list = sorted(deps.values(), key=lambda d: (order.index(d["kind"]), d["label"]))
    nodes: dict[tuple[str, str], dict[str, Any]] = {}

    def place(col: int, key: tuple[str, str], label: str, kind: str, i: int, extra: str = "") -> None:
        nodes[key] = {"x": COL_X[col], "y": 30 + i * (NODE_H + GAP), "w": NODE_W, "h": NODE_H, "label": label[:30],
                      "full": label, "kind": kind, "sub": extra}

    for i, j in enumerate(journeys):
        place(0, ("journey", j), j, "journey", i)
    for i, s in enumerate(doc["services"]):
        place(1, ("service", s["name"]), s["name"], "service", i, f"{s['spans']:,} spans")
    for i, d in enumerate(dep_list):
        place(2, ("dep", f"{d['kind']}:{d['label']}"), d["label"], d["kind"], i,
              f"{KIND_LABEL[d['kind']]} · {d['calls']:,} calls" + (f" · {d['errors']} err" if d["errors"] else ""))
    top = max((c["calls"] for s in doc["services"] for c in s["dependencies"]), default=1)
    edges = []

    def edge(a: tuple[str, str], b: tuple[str, str], calls: int, errors: int, kind: str) -> None:
        if a not in nodes or b not in nodes:
            return
        p, q = nodes[a], nodes[b]
        x1, y1 = p["x"] + p["w"], p["y"] + p["h"] / 2
        x2, y2 = q["x"], q["y"] + q["h"] / 2
        if kind == "service":  # within the middle column: an arc on its right
            x1, x2 = p["x"] + p["w"], q["x"] + q["w"]
            path = f"M{x1},{y1} C{x1 + 50},{y1} {x2 + 50},{y2} {x2},{y2}"
        else:
            mid = (x1 + x2) / 2
            path = f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"
        width = 1 + 3 * math.log1p(calls) / math.log1p(max(top, 1)) if calls else 1
        edges.append({"d": path, "w": round(width, 2), "kind": kind, "error": errors > 0,
                      "title": f"{a[1]} → {b[1].split(':', 1)[-1]}: {calls:,} calls, {errors} errors" if calls else f"{a[1]} → {b[1]}"})

    for s in doc["services"]:
        for j in s["journeys"]:
            edge(("journey", j), ("service", s["name"]), 0, 0, "journey")
        for d in s["dependencies"]:
            if d["kind"] == "service":
                edge(("service", s["name"]), ("service", d["name"]), d["calls"], d["errors"], "service")
            else:
                label = f"{d['provider']}/{d['name']}" if d["provider"] else d["name"]
                edge(("service", s["name"]), ("dep", f"{d['kind']}:{label}"), d["calls"], d["errors"], d["kind"])
    rows = max(len(journeys), len(services), len(dep_list), 1)
    return {"nodes": list(nodes.values()), "edges": edges, "width": COL_X[2] + NODE_W + 10,
            "height": 40 + rows * (NODE_H + GAP), "deps": len(dep_list)}


async def catalog_page(request: Request) -> Response:
    """The catalog of the chosen period (default the last 7 days) with its dependency graph."""
    doc = await catalog_document(request, DEFAULT_SINCE)
    since = (request.query_params.get("since") or DEFAULT_SINCE).strip()
    context = {"nav": "catalog", "doc": doc, "graph": graph(doc), "since": since, "since_choices": SINCE_CHOICES,
               "kind_label": KIND_LABEL}
    return _render(request, "catalog.html", context)


def catalog_ui_routes() -> list[BaseRoute]:
    """Routes of the Catalog page."""
    return [Route("/catalog", _page(catalog_page), methods=["GET"], include_in_schema=False)]
