"""What every route needs, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from starlette.requests import Request

from aisre.act.incidents import IncidentManager
from aisre.act.postmortem import Postmortems
from aisre.core.metrics import IngestMetrics
from aisre.core.settings import Settings
from aisre.evaluate.slo import SloEngine
from aisre.store.base import Store


@dataclass
class AppContext:
    settings: Settings
    store: Store
    registry: CollectorRegistry
    ingest_metrics: IngestMetrics
    slos: SloEngine
    incidents: IncidentManager | None = None
    postmortems: Postmortems | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def tenant_for(self, request: Request) -> str:
        """The caller's tenant (one default tenant until API keys exist)."""
        return self.settings.tenant
