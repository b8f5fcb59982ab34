"""What every route needs, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from aisre.act.incidents import IncidentManager
from aisre.act.postmortem import Postmortems
from aisre.core.auth import Principal
from aisre.core.metrics import IngestMetrics
from aisre.core.settings import Settings
from aisre.evaluate.slo import SloEngine
from aisre.present.api.auth import KeyRing
from aisre.store.protocol import Store


@dataclass
class AppContext:
    settings: Settings
    store: Store
    registry: CollectorRegistry
    ingest_metrics: IngestMetrics
    slos: SloEngine
    keys: KeyRing
    incidents: IncidentManager
    postmortems: Postmortems
    extra: dict[str, object] = field(default_factory=dict)

    def principal(self, request: Request) -> Principal:
        """Who is calling (set by the auth middleware; the local admin when auth is off)."""
        found = request.scope.get("aisre.principal")
        return found if isinstance(found, Principal) else self.keys.principal(None)

    def tenant_for(self, request: Request) -> str:
        """The caller's tenant: every query a route makes is for this tenant only."""
        return self.principal(request).tenant

    def actor(self, request: Request) -> str:
        """Who the audit log names for a change made by this request."""
        return self.principal(request).key_id

    async def audit(self, request: Request, action: str, target: str, before: object, after: object) -> None:
        """Append an audit record for a control-plane change made by this request."""
        await run_in_threadpool(
            self.store.audit, self.tenant_for(request), self.actor(request), action, target, before, after
        )
