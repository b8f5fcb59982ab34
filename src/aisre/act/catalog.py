"""The service catalog: what the traces show (derive/catalog.py) merged with what teams declare
in a catalog file (owner, tier, runbook, on-call, lifecycle), the SLOs of each journey, and an
export as Backstage ``catalog-info.yaml`` entities."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aisre.core.slo import SloSpec, SpecError, SpecValidationError
from aisre.core.timefmt import rfc3339
from aisre.derive.catalog import CatalogSource, discover
from aisre.evaluate._yaml import LineDict, View, parse_documents, read_documents

SERVICE_KEYS = ("name", "owner", "tier", "runbook", "on_call", "description", "lifecycle", "system", "tags")
LIFECYCLES = ("experimental", "production", "deprecated")
BACKSTAGE_API = "backstage.io/v1alpha1"
# Backstage entity names: letters, digits and - _ . between alphanumerics, at most 63 characters.
_NAME = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9._-]{0,61}[a-zA-Z0-9])?$")
RESOURCE_TYPES = {"model": "ai-model", "vector_store": "vector-store", "tool": "ai-tool", "database": "database",
                  "http": "http-endpoint"}


@dataclass(frozen=True)
class Declared:
    """What a team declares about a service."""

    name: str
    owner: str | None = None
    tier: int | None = None
    runbook: str | None = None
    on_call: str | None = None
    description: str = ""
    lifecycle: str = "production"
    system: str | None = None
    tags: tuple[str, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class CatalogFile:
    services: dict[str, Declared] = field(default_factory=dict)
    source: str = ""


def load_catalog_file(path: Path) -> CatalogFile:
    """Read a catalog file; every problem with file, line and field, nothing half-loaded."""
    errors: list[SpecError] = []
    return _finish(read_documents(path, errors), str(path), errors)


def parse_catalog_file(text: str | bytes, file: str = "<catalog>") -> CatalogFile:
    """Like :func:`load_catalog_file` for text already read."""
    errors: list[SpecError] = []
    return _finish(parse_documents(text, file, errors), file, errors)


def _finish(docs: list[tuple[Any, int]], file: str, errors: list[SpecError]) -> CatalogFile:
    out = CatalogFile(source=file)
    if not errors:
        if len(docs) != 1 or not isinstance(docs[0][0], LineDict):
            errors.append(SpecError(file, docs[0][1] if docs else 0, "", "expected one YAML mapping with services"))
        else:
            out = _read(View(docs[0][0], "", file, errors))
    if errors:
        raise SpecValidationError(errors)
    return out


def _read(v: View) -> CatalogFile:
    v.check_keys(("services",))
    services: dict[str, Declared] = {}
    for item, path, line in v.items("services", required=True):
        s = v.as_view(item, path, line)
        if s is None:
            continue
        s.check_keys(SERVICE_KEYS)
        name = s.text("name", True)
        tier = s.integer("tier")
        lifecycle = s.text("lifecycle") or "production"
        if lifecycle not in LIFECYCLES:
            s.error("lifecycle", f"must be one of {', '.join(LIFECYCLES)}; got {lifecycle!r}")
        tags: list[str] = []
        for tag, tpath, tline in s.items("tags"):
            if not isinstance(tag, str):
                v.errors.append(SpecError(v.file, tline, tpath, "a tag is text"))
            else:
                tags.append(tag)
        if name is not None and name in services:
            s.error("name", f"service {name!r} is declared twice")
        elif name is not None:
            services[name] = Declared(
                name, s.text("owner"), tier, s.text("runbook"), s.text("on_call"), s.text("description") or "",
                lifecycle, s.text("system"), tuple(tags), line,
            )
    return CatalogFile(services, v.file)


def catalog(store: CatalogSource, tenant: str, declared: CatalogFile | None, specs: Sequence[SloSpec],
            since_ns: int | None = None, until_ns: int | None = None) -> dict[str, Any]:
    """The discovered catalog merged with the declared one: every service seen or declared, its
    owner, tier, runbook and on-call (declared, else from its journeys' SLOs), journeys and SLOs."""
    found = discover(store, tenant, since_ns, until_ns)
    declared = declared or CatalogFile()
    seen = {s["name"]: s for s in found["services"]}
    slos_of: dict[str, list[SloSpec]] = {}
    for spec in specs:
        if spec.journey:
            slos_of.setdefault(spec.journey, []).append(spec)
    services = []
    for name in sorted(set(seen) | set(declared.services)):
        s = seen.get(name) or {"name": name, "spans": 0, "traces": 0, "errors": 0, "error_rate": None, "roots": 0,
                               "journeys": [], "first_ns": None, "last_ns": None, "dependencies": []}
        d = declared.services.get(name)
        slos = [spec for j in s["journeys"] for spec in slos_of.get(j, [])]
        # Declared fields win; an undeclared service takes its journeys' SLO ownership.
        owner = (d.owner if d else None) or next((x.owner for x in slos if x.owner), None)
        tier = d.tier if d and d.tier is not None else min((x.tier for x in slos if x.tier is not None), default=None)
        runbook = (d.runbook if d else None) or next((x.runbook for x in slos if x.runbook), None)
        services.append({
            **{k: v for k, v in s.items() if k not in ("first_ns", "last_ns")},
            "first_seen": rfc3339(s["first_ns"]), "last_seen": rfc3339(s["last_ns"]),
            "seen": name in seen, "declared": d is not None,
            "owner": owner, "tier": tier, "runbook": runbook, "on_call": d.on_call if d else None,
            "description": d.description if d else "", "lifecycle": d.lifecycle if d else "production",
            "system": d.system if d else None, "tags": list(d.tags) if d else [],
            "slos": [x.id for x in slos],
        })
    journeys = [{**j, "slos": [x.id for x in slos_of.get(j["name"], [])],
                 "owner": next((x.owner for x in slos_of.get(j["name"], []) if x.owner), None)}
                for j in found["journeys"]]
    return {"services": services, "journeys": journeys, "catalog_source": declared.source or None,
            "since": rfc3339(since_ns), "until": rfc3339(until_ns)}


def entity_name(text: str) -> str:
    """A Backstage-valid entity name for any text (model ids, hosts, provider/model pairs)."""
    name = re.sub(r"[^a-zA-Z0-9._-]+", "-", text).strip("-._")[:63].strip("-._")
    return name or "unnamed"


def resource_name(dep: dict[str, Any]) -> str:
    """The Resource entity name of a dependency (provider-qualified for models)."""
    base = f"{dep['provider']}-{dep['name']}" if dep["kind"] == "model" and dep.get("provider") else dep["name"]
    return entity_name(base)


def backstage_entities(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Backstage catalog entities: a Component per service (dependsOn its resources and the
    services it calls), a Resource per model / vector store / tool / database / HTTP host, a
    System per journey, a Group per owner."""
    out: list[dict[str, Any]] = []
    owners: set[str] = set()
    resources: dict[str, dict[str, Any]] = {}
    for j in doc["journeys"]:
        owner = j.get("owner") or "unknown"
        owners.add(owner)
        out.append({"apiVersion": BACKSTAGE_API, "kind": "System",
                    "metadata": {"name": entity_name(j["name"]), "description": f"journey {j['name']} (aisre)",
                                 "annotations": {"aisre.io/journey": j["name"]}},
                    "spec": {"owner": f"group:default/{entity_name(owner)}"}})
    for s in doc["services"]:
        owner = s["owner"] or "unknown"
        owners.add(owner)
        depends = []
        for dep in s["dependencies"]:
            if dep["kind"] == "service":
                depends.append(f"component:default/{entity_name(dep['name'])}")
                continue
            rname = resource_name(dep)
            depends.append(f"resource:default/{rname}")
            r = resources.setdefault(rname, {"dep": dep, "calls": 0})
            r["calls"] += dep["calls"]
        annotations = {"aisre.io/service": s["name"], "aisre.io/spans": str(s["spans"])}
        if s["tier"] is not None:
            annotations["aisre.io/tier"] = str(s["tier"])
        links = []
        if s["runbook"]:
            links.append({"url": s["runbook"], "title": "Runbook", "type": "runbook"})
        if s["on_call"] and re.match(r"^https?://", s["on_call"]):
            links.append({"url": s["on_call"], "title": "On-call", "type": "on-call"})
        elif s["on_call"]:
            annotations["aisre.io/on-call"] = s["on_call"]
        metadata: dict[str, Any] = {"name": entity_name(s["name"]), "annotations": annotations,
                                    "tags": sorted({entity_name(t).lower() for t in ["ai", *s["tags"]]})}
        if s["description"]:
            metadata["description"] = s["description"]
        if links:
            metadata["links"] = links
        spec: dict[str, Any] = {"type": "service", "lifecycle": s["lifecycle"], "owner": f"group:default/{entity_name(owner)}"}
        if s["system"] or len(s["journeys"]) == 1:
            spec["system"] = entity_name(s["system"] or s["journeys"][0])
        if depends:
            spec["dependsOn"] = sorted(set(depends))
        out.append({"apiVersion": BACKSTAGE_API, "kind": "Component", "metadata": metadata, "spec": spec})
    for rname, r in sorted(resources.items()):
        dep = r["dep"]
        owner = dep.get("provider") or "external"
        owners.add(owner)
        out.append({"apiVersion": BACKSTAGE_API, "kind": "Resource",
                    "metadata": {"name": rname, "title": dep["name"],
                                 "annotations": {"aisre.io/dependency-kind": dep["kind"], "aisre.io/calls": str(r["calls"])}},
                    "spec": {"type": RESOURCE_TYPES[dep["kind"]], "owner": f"group:default/{entity_name(owner)}"}})
    for owner in sorted(owners):
        out.append({"apiVersion": BACKSTAGE_API, "kind": "Group", "metadata": {"name": entity_name(owner)},
                    "spec": {"type": "team", "children": []}})
    return out


def backstage_yaml(doc: dict[str, Any]) -> str:
    """The entities as one multi-document ``catalog-info.yaml``."""
    return yaml.safe_dump_all(backstage_entities(doc), sort_keys=False, allow_unicode=True)
