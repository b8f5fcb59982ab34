"""What a platform score's subject looks like: ``<kind>:<name>``, e.g. ``model:churn-v3``."""

from __future__ import annotations

import re

MAX_SUBJECT = 256
_SUBJECT = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*:[^\x00-\x1f\x7f]+$")
SUBJECT_HELP = "<kind>:<name>, e.g. model:churn-v3 or dataset:customer_orders"


def subject_problem(subject: object) -> str | None:
    """Why ``subject`` cannot name a platform score's subject; None when it can."""
    if not isinstance(subject, str) or not subject:
        return f"subject must be text: {SUBJECT_HELP}"
    if len(subject) > MAX_SUBJECT:
        return f"subject must be at most {MAX_SUBJECT} characters"
    if subject != subject.strip() or not _SUBJECT.match(subject):
        return f"subject must be {SUBJECT_HELP}; got {subject!r}"
    return None
