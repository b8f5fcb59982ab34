"""The postmortem of an incident, generated as Markdown (and rendered to HTML) from what
aisre holds: impact from runs and the SLO's budget, the timeline, triage evidence, and
exemplar failing traces reconstructed in full — span tree with timings, prompts and
completions where captured, tool calls with arguments and results, retrieved documents,
errors — plus the action items and how many are done.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from markdown_it import MarkdownIt

from aisre.act.incidents import IncidentManager
from aisre.core.display import money
from aisre.core.errors import NotFound
from aisre.core.rows import Incident
from aisre.core.timefmt import rfc3339
from aisre.evaluate.slo import SloEngine

MAX_TEXT = 1500  # characters of one prompt/completion/tool result shown
FULL_EXEMPLARS = 2  # exemplar traces reconstructed in full; the rest are listed as links
TraceGetter = Callable[[str, str], dict[str, Any]]
# (tenant, journey or None, since_ns, limit) → policy violations of runs started since, newest first.
ViolationLister = Callable[[str, str | None, int, int], list[dict[str, Any]]]
MAX_VIOLATIONS = 10_000  # read for one postmortem
LISTED_RUNS = 10  # violating runs listed by trace; the rest are counted


def _cell(value: Any) -> str:
    text = "-" if value is None or value == "" else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _inline(value: Any) -> str:
    """Plain text safe inside a Markdown paragraph or list item."""
    text = "" if value is None else str(value)
    return re.sub(r"([\\`*_\[\]<>#|])", r"\\\1", text.replace("\n", " "))


def _fence(text: str, lang: str = "") -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + f"\n… ({len(text) - MAX_TEXT} more characters)"
    return f"{fence}{lang}\n{text}\n{fence}"


def _when(stamp: str | None) -> str:
    return "-" if not stamp else stamp.replace("T", " ").split(".")[0] + " UTC"


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return json.dumps(content, indent=2, ensure_ascii=False)


def message_lines(messages: Any) -> list[tuple[str, str]]:
    """(role, text) of each message, whichever GenAI convention it came in."""
    if isinstance(messages, dict):
        messages = [messages]
    if not isinstance(messages, list):
        return [("", _text_of(messages))]
    out = []
    for message in messages:
        if not isinstance(message, dict):
            out.append(("", _text_of(message)))
            continue
        role = str(message.get("role") or (message.get("finish_reason") and "assistant") or "")
        parts = message.get("parts")
        if isinstance(parts, list):
            texts = []
            for part in parts:
                if not isinstance(part, dict):
                    texts.append(_text_of(part))
                elif part.get("type") == "text":
                    texts.append(str(part.get("content", "")))
                elif part.get("type") == "tool_call":
                    texts.append(f"tool call {part.get('name')}({_text_of(part.get('arguments'))})")
                elif part.get("type") == "tool_call_response":
                    texts.append(f"tool result: {_text_of(part.get('response') or part.get('result'))}")
                else:
                    texts.append(_text_of(part))
            out.append((role, "\n".join(texts)))
        else:
            out.append((role, _text_of(message.get("content", message))))
    return out


def _once(seen: dict[str, str] | None, text: str, where: str) -> str | None:
    """Where ``text`` was shown already (None the first time): a system prompt sent with every
    call is printed once, not once per call."""
    if seen is None:
        return None
    key = text.strip()
    if key in seen:
        return seen[key]
    seen[key] = where
    return None


def trace_markdown(doc: dict[str, Any], seen: dict[str, str] | None = None) -> list[str]:
    """One trace in full: run summary, span tree with timings, then each span's GenAI details.
    ``seen`` (text → where it was first shown) prints repeated content once across calls."""
    lines = [
        f"### Trace `{doc['trace_id']}`",
        "",
        f"- [Open in the trace view](/traces/{doc['trace_id']})",
        f"- Journey **{_inline(doc['journey'])}**, outcome **{doc['outcome']}**, started {_when(doc['start_time'])}, "
        f"took {doc['duration_ms'] or 0:.0f} ms",
        f"- Failure: {_inline(doc.get('failure_reason') or '-')}",
        f"- Versions: service {_inline(doc.get('service_version') or '-')}, prompt "
        f"{_inline(doc.get('prompt_name') or '-')} {_inline(doc.get('prompt_version') or '-')}, models "
        f"{_inline(', '.join(doc.get('models') or []) or '-')}",
        f"- Spans {doc.get('span_count')}, model calls {doc.get('llm_calls')} ({doc.get('llm_errors')} failed), "
        f"tool calls {doc.get('tool_calls')}, retrieval {doc.get('retrieval_calls')}, retries {doc.get('retries')}, "
        f"tokens {(doc.get('input_tokens') or 0) + (doc.get('output_tokens') or 0)}, "
        f"cost {money(doc.get('cost_usd') or 0)}",
        "",
        "#### Span tree",
        "",
        "| span | operation | start (ms) | duration (ms) | status | detail |",
        "|---|---|---:|---:|---|---|",
    ]
    for span in doc["spans"]:
        indent = "\u00a0\u00a0" * span["depth"]
        detail = []
        model = span.get("response_model") or span.get("request_model")
        if model:
            detail.append(model)
        if span.get("input_tokens") is not None or span.get("output_tokens") is not None:
            detail.append(f"{span.get('input_tokens') or 0}→{span.get('output_tokens') or 0} tok")
        if span.get("tool_name"):
            detail.append(f"tool {span['tool_name']}")
        if span.get("retry_attempt"):
            detail.append(f"retry {span['retry_attempt']}")
        if span.get("http_status"):
            detail.append(f"HTTP {span['http_status']}")
        status = span["status"] + (f": {span['status_message']}" if span.get("status_message") else "")
        lines.append(
            f"| {indent}{_cell(span['name'])} | {_cell(span['operation'])} | {span['offset_ms']:.1f} | "
            f"{span['duration_ms']:.1f} | {_cell(status)} | {_cell(', '.join(detail))} |"
        )
    for span in doc["spans"]:
        genai = span.get("genai") or {}
        if not genai:
            continue
        here = f"{_inline(span['name'])} (`{span['span_id']}`)"
        lines += ["", f"#### {_inline(span['name'])} (`{span['span_id']}`, {span['duration_ms']:.1f} ms)", ""]
        if "system_instructions" in genai:
            text = _text_of(genai["system_instructions"])
            before = _once(seen, text, here)
            lines += ["**System instructions**", "", f"_same as in {before}_" if before else _fence(text), ""]
        for key, title in (("input_messages", "Prompt"), ("output_messages", "Completion")):
            if key in genai:
                lines += [f"**{title}**", ""]
                for role, text in message_lines(genai[key]):
                    before = _once(seen, text, here)
                    lines += [f"_{_inline(role or 'message')}_", "", f"_same as in {before}_" if before else _fence(text), ""]
        if "tool_arguments" in genai or "tool_result" in genai:
            lines += [f"**Tool call** `{span.get('tool_name') or span['name']}`", ""]
            if "tool_arguments" in genai:
                lines += ["Arguments:", "", _fence(_text_of(genai["tool_arguments"]), "json"), ""]
            if "tool_result" in genai:
                lines += ["Result:", "", _fence(_text_of(genai["tool_result"]), "json"), ""]
        if "query" in genai:
            lines += ["**Query**", "", _fence(_text_of(genai["query"])), ""]
        if "retrieval_documents" in genai:
            lines += ["**Retrieved documents**", "", "| id | score | content |", "|---|---:|---|"]
            docs = genai["retrieval_documents"]
            for d in docs if isinstance(docs, list) else [docs]:
                d = d if isinstance(d, dict) else {"content": d}
                lines.append(f"| {_cell(d.get('id'))} | {_cell(d.get('score'))} | {_cell(str(d.get('content', ''))[:300])} |")
            lines.append("")
        for error in genai.get("errors") or []:
            lines += [f"**Error** {_inline(error.get('type') or '')}: {_inline(error.get('message') or '')}", ""]
            if error.get("stacktrace"):
                lines += [_fence(str(error["stacktrace"])), ""]
    return lines


class Postmortems:
    """Builds postmortems from the incident manager, the SLOs and the trace store."""

    def __init__(self, incidents: IncidentManager, slos: SloEngine | None, get_trace: TraceGetter,
                 slo_minutes: Callable[[str, int, int, str], dict[str, tuple[Any, Any, Any]]] | None = None,
                 clock: Callable[[], int] = time.time_ns, violations: ViolationLister | None = None) -> None:
        self._incidents = incidents
        self._slos = slos
        self._get_trace = get_trace
        self._slo_minutes = slo_minutes
        self._clock = clock
        self._violations = violations

    def impact(self, tenant: str, row: Incident) -> dict[str, Any]:
        """Runs and users affected, cost of failed runs, and error budget spent."""
        now = self._clock()
        start = row.get("impact_start_ns") or row.get("first_alert_ns") or row["opened_ns"]
        end = row.get("mitigated_ns") or row.get("resolved_ns") or now
        out: dict[str, Any] = {"start": rfc3339(start), "end": rfc3339(end), "ongoing": row["state"] != "resolved"}
        if journey := row["journey"]:
            out.update(self._incidents.store.impact(tenant, journey, start, end + 1))
        if (slo := row["slo"]) and self._slos is not None and self._slo_minutes is not None:
            try:
                status = self._slos.status(tenant, slo, now)
            except NotFound:
                status = None
            arrays = self._slo_minutes(tenant, start // 60_000_000_000 * 60_000_000_000, end + 1, slo).get(slo)
            if status is not None and "error_budget" in status and arrays is not None:
                bad = int(sum(int(t) - int(g) for _, g, t in zip(*arrays, strict=True)))
                total = status["error_budget"]["total_events"] or 0
                out["budget"] = {"slo": row["slo"], "window": status["window"], "bad_events": bad,
                                 "budget_events": total, "spent_ratio": bad / total if total else None,
                                 "remaining_ratio": status["error_budget"]["remaining_ratio"]}
        return out

    def policy_violations(self, tenant: str, row: Incident) -> dict[str, Any] | None:
        """Agent policy violations of the runs (of the incident's journey) that started in its
        impact window, per rule, with the violating runs; None when policies are not wired."""
        if self._violations is None:
            return None
        start = row.get("impact_start_ns") or row.get("first_alert_ns") or row["opened_ns"]
        end = row.get("mitigated_ns") or row.get("resolved_ns") or self._clock()
        found = [v for v in self._violations(tenant, row.get("journey"), start, MAX_VIOLATIONS)
                 if int(v["run_start_ns"]) <= end]
        rules: dict[tuple[str, str], dict[str, Any]] = {}
        runs: dict[str, list[dict[str, Any]]] = {}
        for v in found:
            rule = rules.setdefault((v["policy"], v["rule"]), {
                "policy": v["policy"], "rule": v["rule"], "kind": v["kind"], "effect": v["effect"],
                "violations": 0, "runs": set(), "example": v["message"]})
            rule["violations"] += 1
            rule["runs"].add(v["trace_id"])
            runs.setdefault(v["trace_id"], []).append(v)
        per_rule = sorted(({**r, "runs": len(r["runs"])} for r in rules.values()),
                          key=lambda r: (-r["runs"], r["policy"], r["rule"]))
        return {"start_ns": start, "end_ns": end, "violations": len(found), "runs": runs, "rules": per_rule,
                "denied_runs": len({v["trace_id"] for v in found if v["effect"] == "deny"})}

    def _violation_lines(self, tenant: str, row: Incident) -> list[str]:
        found = self.policy_violations(tenant, row)
        if found is None:
            return []
        where = f"of {_inline(row['journey'])} " if row.get("journey") else ""
        lines = ["", "## Agent policy violations", ""]
        if not found["violations"]:
            return [*lines, f"None: no run {where}that started in the impact period broke an agent policy."]
        lines += [f"{found['violations']} violations in {len(found['runs'])} runs {where}that started in the impact "
                  f"period; {found['denied_runs']} runs broke a deny rule.", "",
                  "| policy | rule | kind | effect | runs | violations | for example |", "|---|---|---|---|---:|---:|---|"]
        lines += [f"| {_cell(r['policy'])} | {_cell(r['rule'])} | {r['kind']} | {r['effect']} | {r['runs']} | "
                  f"{r['violations']} | {_cell(r['example'])} |" for r in found["rules"]]
        lines += ["", "Violating runs:", ""]
        ordered = sorted(found["runs"].items(), key=lambda kv: min(int(v["start_ns"]) for v in kv[1]))
        for trace_id, items in ordered[:LISTED_RUNS]:
            first = min(items, key=lambda v: int(v["start_ns"]))
            lines.append(f"- [`{trace_id}`](/traces/{trace_id}) at {_when(rfc3339(int(first['run_start_ns'])))}: "
                         + "; ".join(f"{_inline(v['rule'])}: {_inline(v['message'])}" for v in items))
        if len(ordered) > LISTED_RUNS:
            lines.append(f"- and {len(ordered) - LISTED_RUNS} more runs")
        return lines

    def markdown(self, incident_id: int, tenant: str) -> str:
        """The postmortem document."""
        doc = self._incidents.get(incident_id, tenant)
        row = self._incidents.store.get_incident(tenant, incident_id)
        impact = self.impact(tenant, row)
        evidence = doc.get("evidence") or {}
        lines = [
            f"# Postmortem: incident #{doc['id']} — {_inline(doc['title'])}",
            "",
            f"_Generated by aisre at {_when(rfc3339(self._clock()))} from stored traces, alerts and timeline. "
            f"State: **{doc['state']}**, severity **{doc['severity']}**._",
            "",
            "## Summary",
            "",
            f"- Journey: **{_inline(doc.get('journey') or '-')}**; SLO: {_inline(doc.get('slo') or '-')}; "
            f"owner {_inline(doc.get('owner') or '-')}; tier {doc['tier'] if doc.get('tier') is not None else '-'}; "
            + (f"runbook <{doc['runbook']}>" if doc.get("runbook") else "runbook: **none linked**"),
            f"- Commander: {_inline(doc.get('commander') or '-')}",
            f"- Worst alert: {_inline(doc.get('summary') or '-')}",
            f"- Impact began {_when(doc.get('impact_start'))}; first alert after it {_when(doc.get('first_alert'))}; "
            f"opened {_when(doc.get('opened'))}",
            f"- How impact start was found: {_inline((doc.get('impact') or {}).get('explanation') or 'not found')}"
            + (f" (revised from {_when(doc['impact']['revised_from'])} when {_inline(doc['impact'].get('revised_because'))})"
               if (doc.get("impact") or {}).get("revised_from") else ""),
            f"- Acknowledged {_when(doc.get('acknowledged'))} by {_inline(doc.get('acknowledged_by') or '-')}; "
            f"mitigated {_when(doc.get('mitigated'))}; resolved {_when(doc.get('resolved'))} by "
            f"{_inline(doc.get('resolved_by') or '-')}",
            f"- Time to detect {_secs(doc['time_to_detect_s'])}, to acknowledge {_secs(doc['time_to_acknowledge_s'])}, "
            f"to restore {_secs(doc['time_to_restore_s'])}",
        ]
        if evidence:
            top = evidence.get("top_suspect")
            lines.append(f"- Failing runs point at: **{_inline(evidence.get('points_at') or 'no single layer')}**")
            if top:
                lines.append(f"- Top suspected change: **{_inline(top['summary'])}** — carried by "
                             f"{_pct(top['bad_share'])} of failing runs and {_pct(top['good_share'])} of good ones")
        lines += ["", "## Impact", "", "| measure | value |", "|---|---|",
                  f"| period | {_when(impact['start'])} → {_when(impact['end'])}{' (ongoing)' if impact['ongoing'] else ''} |"]
        if "runs" in impact:
            lines += [
                f"| failed runs | {impact['failed_runs']} of {impact['runs']} |",
                f"| distinct users affected | {impact['users']} (of {impact['all_users']} active) |"
                if impact.get("users") is not None else
                "| distinct users affected | unknown: the period's raw spans expired (counts from minute rollups) |",
                f"| cost of failed runs | {money(impact['failed_cost_usd'])} (of {money(impact['cost_usd'])}) |",
            ]
        budget = impact.get("budget")
        if budget:
            lines.append(f"| error budget spent ({_cell(budget['slo'])}, {budget['window']}) | {_pct(budget['spent_ratio'])} "
                         f"({budget['bad_events']} bad events of {budget['budget_events']:.1f} allowed); "
                         f"{_pct(budget['remaining_ratio'])} left |")
        lines += self._violation_lines(tenant, row)
        lines += ["", "## Timeline", "", "| time (UTC) | kind | who | what |", "|---|---|---|---|"]
        for item in doc["timeline"]:
            lines.append(f"| {_when(item['time'])} | {item['kind']} | {_cell(item['actor'])} | {_cell(item['message'])} |")
        lines += ["", "## Contributing factors", ""]
        if not evidence:
            lines.append("No triage evidence (the incident names no journey).")
        else:
            lines += [
                f"Compared {evidence['bad_runs']} failing runs since impact began with {evidence['good_runs']} good runs "
                f"since {_when(evidence['window']['baseline_start'])}.",
                "", "### Where the failing runs point", "",
                "| layer | failing runs with an error there | good runs with an error there | time there, failing / good (ms) | HTTP statuses | error types |",
                "|---|---:|---:|---|---|---|",
            ]
            for layer in evidence["layers"]:
                ms = f"{layer['bad_ms'] or 0:.0f} / {layer['good_ms'] or 0:.0f}" if layer["bad_ms"] or layer["good_ms"] else "-"
                lines.append(
                    f"| {layer['layer']} | {_pct(layer['bad_error_share'])} | {_pct(layer['good_error_share'])} | {ms} | "
                    f"{_cell(', '.join(f'{k}×{v}' for k, v in layer['http_statuses'].items()))} | "
                    f"{_cell(', '.join(f'{k}×{v}' for k, v in layer['error_types'].items()))} |")
            lines += ["", "### Suspected changes", ""]
            if evidence["suspects"]:
                lines += ["| rank | change | when | before impact | failing runs carrying it | good runs carrying it | score |",
                          "|---:|---|---|---:|---:|---:|---:|"]
                for rank, s in enumerate(evidence["suspects"], 1):
                    lines.append(f"| {rank} | {_cell(s['summary'])} ({s['kind']}, {s['source']}) | {_when(s['at'])} | "
                                 f"{s['minutes_before_impact']:.1f} min | {_pct(s['bad_share'])} | {_pct(s['good_share'])} | "
                                 f"{s['score']:.3f} |")
            else:
                lines.append("No change was recorded or detected in the day before impact.")
            lines += ["", "### Changed during the incident", "",
                      "Made after impact began, so not ranked as causes (a rollback or fix shows here).", ""]
            if evidence.get("changed_during"):
                lines += ["| change | when | after impact | failing runs carrying it | good runs carrying it |",
                          "|---|---|---:|---:|---:|"]
                for c in evidence["changed_during"]:
                    lines.append(f"| {_cell(c['summary'])} ({c['kind']}, {c['source']}) | {_when(c['at'])} | "
                                 f"{c['minutes_after_impact']:.1f} min | {_pct(c['bad_share'])} | {_pct(c['good_share'])} |")
            else:
                lines.append("None.")
            lines += ["", "### Failure reasons", ""]
            lines += [f"- {r['runs']} × {_inline(r['reason'])}" for r in evidence["failure_reasons"]] or ["- none"]
        lines += ["", "## Exemplar traces", ""]
        exemplars = evidence.get("exemplars") or []
        if not exemplars:
            lines.append("No failing trace to show.")
        seen: dict[str, str] = {}
        for trace_id in exemplars[:FULL_EXEMPLARS]:
            try:
                lines += trace_markdown(self._get_trace(tenant, trace_id), seen)
            except NotFound:
                lines.append(f"Trace `{trace_id}`: trace expired (its raw spans are past the tenant's retention; "
                             "the counts above come from the minute rollups, which are kept longer).")
            lines.append("")
        if exemplars[FULL_EXEMPLARS:]:
            lines += ["More failing traces: " + ", ".join(f"[`{t}`](/traces/{t})" for t in exemplars[FULL_EXEMPLARS:]), ""]
        lines += [
            "## Root cause", "",
            "_To fill in: what failed and why, in a few sentences — the evidence and suspected changes "
            "above are where to start._", "",
            "## Lessons learned", "",
            "- **What went well:** _to fill in_",
            "- **What went wrong:** _to fill in_",
            "- **Where we got lucky:** _to fill in_", "",
        ]
        items = doc["action_items"]
        done = sum(1 for i in items if i["status"] == "done")
        lines += ["## Action items", ""]
        if items:
            lines += ["| # | item | owner | due | status |", "|---:|---|---|---|---|"]
            lines += [f"| {i['id']} | {_cell(i['title'])} | {_cell(i['owner'])} | {_when(i['due'])} | {i['status']} |" for i in items]
            lines += ["", f"Remediation: {done} of {len(items)} done ({done / len(items) * 100:.0f} %)."]
        else:
            lines.append("None recorded yet.")
        return "\n".join(lines) + "\n"


def render_html(markdown: str) -> str:
    """Markdown → HTML (CommonMark plus tables; raw HTML in the source is escaped, not passed)."""
    return MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
