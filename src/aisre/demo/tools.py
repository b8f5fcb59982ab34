"""The support-bot's tools: OpenAI function schemas and fake implementations."""

from __future__ import annotations

import json
import random
import re
from typing import Any

from aisre.demo import corpus


def _function(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": list(properties),
            },
        },
    }


LOOKUP_ORDER = _function(
    "lookup_order",
    "Look up an order's status, carrier and expected delivery date.",
    {"order_id": {"type": "string", "description": "Order number, digits only"}},
)
SEARCH_KB = _function(
    "search_kb",
    "Search the support knowledge base and return the best matching articles.",
    {"query": {"type": "string", "description": "What to search for"}},
)
CREATE_TICKET = _function(
    "create_ticket",
    "Open a support ticket for a human agent.",
    {
        "summary": {"type": "string", "description": "One line summary"},
        "priority": {"type": "string", "enum": ["low", "normal", "high"]},
    },
)

ISSUE_REFUND = _function(
    "issue_refund",
    "Refund an order to the customer's card (the demo's policy denies it to the triage agent).",
    {"order_id": {"type": "string", "description": "Order number, digits only"},
     "amount": {"type": "number", "description": "Refund in USD"}},
)

ASK_TOOLS: tuple[dict[str, Any], ...] = (LOOKUP_ORDER,)
TRIAGE_TOOLS: tuple[dict[str, Any], ...] = (LOOKUP_ORDER, SEARCH_KB, CREATE_TICKET)

_ORDER = re.compile(r"#?(\d{5})")
_STATUSES = ("processing", "shipped", "in transit", "delivered", "delayed")


def tool_names(tools: Any) -> list[str]:
    """Function names of an OpenAI ``tools`` request value."""
    names = []
    for tool in tools or ():
        if isinstance(tool, dict):
            name = (tool.get("function") or {}).get("name")
            if isinstance(name, str):
                names.append(name)
    return names


def arguments_for(name: str, context: str) -> dict[str, Any]:
    """Arguments a model would plausibly pass to tool ``name`` given the conversation text."""
    match = _ORDER.search(context)
    order = match.group(1) if match else "10000"
    if name == "lookup_order":
        return {"order_id": order}
    if name == "search_kb":
        words = [w for w in re.findall(r"[a-z]+", context.lower()) if len(w) > 4]
        return {"query": " ".join(words[-6:]) or "order status"}
    if name == "create_ticket":
        return {"summary": f"Follow up on order {order}", "priority": "normal"}
    if name == "issue_refund":
        return {"order_id": order, "amount": 49.0}
    return {}


def run_tool(name: str, arguments: str, rng: random.Random) -> str:
    """Execute fake tool ``name`` and return its JSON result."""
    try:
        args = json.loads(arguments) if arguments else {}
    except json.JSONDecodeError:
        return json.dumps({"error": "arguments are not valid JSON"})
    if name == "lookup_order":
        return json.dumps(
            {
                "order_id": str(args.get("order_id", "")),
                "status": rng.choice(_STATUSES),
                "carrier": rng.choice(("DHL", "UPS", "PostNL")),
                "eta_days": rng.randint(0, 6),
            }
        )
    if name == "search_kb":
        query = set(str(args.get("query", "")).lower().split())
        ranked = sorted(
            corpus.DOCS,
            key=lambda d: len(query & set(d.content.lower().split())),
            reverse=True,
        )
        return json.dumps([{"id": d.id, "title": d.title} for d in ranked[:2]])
    if name == "create_ticket":
        return json.dumps({"ticket_id": f"T-{rng.randint(1000, 9999)}", "status": "open"})
    if name == "issue_refund":
        return json.dumps({"refund_id": f"R-{rng.randint(1000, 9999)}", "status": "issued"})
    return json.dumps({"error": f"unknown tool {name}"})
