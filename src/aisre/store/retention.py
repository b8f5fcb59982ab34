"""Retention policy, whatever the backend: how many days raw spans are kept, per tenant.

Backends do the expiring (store/duckdb/retention.py); this reads and checks the policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from aisre.core.errors import PermanentError

DAY_NS = 86_400 * 10**9
MAX_DAYS = 36_500


def load_retention_file(path: str) -> dict[str, float]:
    """Per-tenant retention days from YAML (``tenants: {name: days}``); bad files fail at start."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PermanentError(f"cannot read retention_file {path!r}: {exc}") from None
    tenants = data.get("tenants") if isinstance(data, dict) else None
    if not isinstance(tenants, dict):
        raise PermanentError(f"retention_file {path!r} must hold 'tenants: {{NAME: DAYS}}'")
    return {str(name): check_days(days, f"retention_file {path!r}, tenant {name!r}") for name, days in tenants.items()}


def check_days(days: Any, where: str = "retention") -> float:
    """Retention days as a number ≥ 0 (0 keeps raw spans for ever), or a PermanentError naming ``where``."""
    # The cap keeps cutoffs inside BIGINT nanoseconds.
    if isinstance(days, bool) or not isinstance(days, int | float) or not 0 <= days <= MAX_DAYS:
        raise PermanentError(
            f"{where}: days must be a number from 0 to {MAX_DAYS:,} (0 keeps raw spans for ever), got {days!r}"
        )
    return float(days)
