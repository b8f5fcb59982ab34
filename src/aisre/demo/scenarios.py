"""Fault scenarios as data: each is a name plus knob values for the provider and the service.

Add a scenario by adding an entry to ``SCENARIOS`` (or pass a :class:`Scenario`, or a mapping
through :meth:`Scenario.from_dict`, to the runner); no code changes needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aisre.demo.models import CHAT_MODELS, MODELS

if TYPE_CHECKING:  # the provider and service load a web server and the OTel SDK
    from aisre.demo.provider import Faults
    from aisre.demo.service import ServiceConfig


@dataclass(frozen=True)
class Scenario:
    """Knob values for one demo scenario."""

    name: str
    description: str = ""
    # Provider faults, applied to ``fault_models`` (None: every chat model).
    failure_rate: float = 0.0  # HTTP 500
    rate_limit_rate: float = 0.0  # HTTP 429 with retry-after
    extra_latency_s: float = 0.0
    fault_models: tuple[str, ...] | None = None
    tool_call_rate: float = 0.35  # ask: share of answers that look an order up first
    # Traffic.
    traffic_factor: float = 1.0  # multiplies the runner's rate
    agent_share: float = 0.2  # share of journeys that are triage-agent
    # The stable service replica.
    service_version: str = "1.4.2"
    prompt_version: str = "v3"
    prompt_tokens_factor: float = 1.0
    model_override: str | None = None  # chat model of the ask journey
    fallback_model: str | None = None
    max_retries: int = 2
    app_failure_rate: float = 0.0
    reask_rate: float = 0.0  # answers the app rejects and asks again: billed retries
    max_reasks: int = 2
    agent_loop_rate: float = 0.0  # triage runs that look the same order up again and again
    agent_denied_tool_rate: float = 0.0  # triage runs that issue a refund (denied by the demo policy)
    request_timeout_s: float | None = None  # the service's deadline for one chat call
    retrieval_empty_rate: float = 0.0  # ask searches that find no document
    # A canary replica taking a share of traffic; None fields inherit the stable value.
    canary_share: float = 0.0
    canary_version: str = "1.5.0"
    canary_prompt_version: str | None = None
    canary_prompt_tokens_factor: float | None = None
    canary_failure_rate: float = 0.0  # app-level failures in the canary only
    canary_groundedness_drop: float = 0.0  # the canary's answers are this much less grounded
    canary_agent_loop_rate: float | None = None  # the canary's triage agent loops this often
    # The ML platform under the service (demo/platform.py): the GPU pool's utilisation climbs
    # to this percent (None: it idles at 58-66 % with slow growth), the feature view stops
    # refreshing, and the nightly batch job overruns its 06:00 deadline for this many nights.
    gpu_util_peak: float | None = None
    features_stale: bool = False
    batch_missed_nights: int = 0
    # Seconds of healthy traffic (every service knob at its default) before this
    # scenario's service knobs roll out, so the rollout is a change aisre can see.
    rollout_after_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("failure_rate", "rate_limit_rate", "tool_call_rate", "agent_share",
                     "app_failure_rate", "canary_share", "canary_failure_rate", "canary_groundedness_drop",
                     "reask_rate", "agent_loop_rate", "agent_denied_tool_rate", "retrieval_empty_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"scenario {self.name!r}: {name} must be within [0, 1], got {value}")
        if self.failure_rate + self.rate_limit_rate > 1.0:
            raise ValueError(f"scenario {self.name!r}: failure_rate + rate_limit_rate exceeds 1")
        if self.rollout_after_s < 0:
            raise ValueError(f"scenario {self.name!r}: rollout_after_s must be >= 0")
        if self.gpu_util_peak is not None and not 0.0 <= self.gpu_util_peak <= 100.0:
            raise ValueError(f"scenario {self.name!r}: gpu_util_peak must be within [0, 100] percent")
        if self.batch_missed_nights < 0:
            raise ValueError(f"scenario {self.name!r}: batch_missed_nights must be >= 0")
        if self.traffic_factor <= 0:
            raise ValueError(f"scenario {self.name!r}: traffic_factor must be > 0")
        for model in (self.model_override, self.fallback_model, *(self.fault_models or ())):
            if model is not None and model not in MODELS:
                raise ValueError(f"scenario {self.name!r}: unknown model {model!r}; known: {sorted(MODELS)}")
        for model in (self.model_override, self.fallback_model):
            if model is not None and model not in CHAT_MODELS:
                raise ValueError(f"scenario {self.name!r}: {model!r} is not a chat model")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scenario:
        """Build a scenario from plain data (e.g. YAML), refusing unknown knobs."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown scenario knob(s) {sorted(unknown)}; known: {sorted(known)}")
        values = dict(data)
        if values.get("fault_models") is not None:
            values["fault_models"] = tuple(values["fault_models"])
        return cls(**values)

    def with_knobs(self, **knobs: Any) -> Scenario:
        """A copy with some knobs changed."""
        return replace(self, **knobs) if knobs else self

    def before_rollout(self) -> Scenario:
        """What runs before the rollout: default service and provider knobs, this traffic."""
        return Scenario(
            f"{self.name} (before rollout)", "Healthy traffic before the rollout.",
            traffic_factor=self.traffic_factor, agent_share=self.agent_share, tool_call_rate=self.tool_call_rate,
        )

    def faults(self) -> Faults:
        """The provider faults this scenario injects."""
        from aisre.demo.provider import Faults

        return Faults(self.failure_rate, self.rate_limit_rate, self.extra_latency_s)

    def service_config(self, *, canary: bool = False) -> ServiceConfig:
        """The service replica's configuration (stable, or the canary's)."""
        from aisre.demo.service import ServiceConfig

        stable = ServiceConfig(
            service_version=self.service_version,
            prompt_version=self.prompt_version,
            prompt_tokens_factor=self.prompt_tokens_factor,
            chat_model=self.model_override or ServiceConfig.chat_model,
            fallback_model=self.fallback_model,
            max_retries=self.max_retries,
            app_failure_rate=self.app_failure_rate,
            reask_rate=self.reask_rate,
            max_reasks=self.max_reasks,
            agent_loop_rate=self.agent_loop_rate,
            agent_denied_tool_rate=self.agent_denied_tool_rate,
            request_timeout_s=self.request_timeout_s,
            retrieval_empty_rate=self.retrieval_empty_rate,
        )
        if not canary:
            return stable
        return replace(
            stable,
            service_version=self.canary_version,
            prompt_version=self.canary_prompt_version or self.prompt_version,
            prompt_tokens_factor=self.canary_prompt_tokens_factor or self.prompt_tokens_factor,
            app_failure_rate=self.canary_failure_rate,
            groundedness_drop=self.canary_groundedness_drop,
            agent_loop_rate=(self.canary_agent_loop_rate if self.canary_agent_loop_rate is not None
                             else self.agent_loop_rate),
        )


# A provider 500 on one model call in 2,000. A 500 fails its run (the service retries only
# 429s), and a triage-agent run makes several calls: at 0.2 % per call, triage runs failed
# about 1 % of the time, right at their 99 % objective, so the healthy demo paged.
NOISE_FAILURE_RATE = 0.0005

SCENARIOS: Mapping[str, Scenario] = MappingProxyType({
    s.name: s
    for s in (
        Scenario(
            "default",
            "Healthy service with the background noise of a real provider: a rare 500, "
            "some 429s the service retries. Well inside its SLOs.",
            failure_rate=NOISE_FAILURE_RATE,
            rate_limit_rate=0.01,
        ),
        Scenario(
            "retry-storm",
            "The provider rate-limits gpt-4o-mini hard and its answers often fail validation; "
            "app retries multiply calls per run, and the re-asked answers are billed.",
            rate_limit_rate=0.3,
            fault_models=("gpt-4o-mini",),
            max_retries=3,
            reask_rate=0.85,
            max_reasks=3,
        ),
        Scenario(
            "prompt-regression",
            "Prompt template v4 is much longer: input tokens per call up, outcomes unchanged.",
            prompt_version="v4",
            prompt_tokens_factor=2.5,
        ),
        Scenario(
            "model-fallback",
            "gpt-4o-mini fails often; the app falls back to the costlier gpt-4.1.",
            failure_rate=0.5,
            fault_models=("gpt-4o-mini",),
            fallback_model="gpt-4.1",
        ),
        Scenario(
            "provider-outage",
            "The model provider answers 500 to most chat calls: ask runs fail and burn budget fast.",
            failure_rate=0.6,
            fault_models=("gpt-4o-mini", "gpt-4.1"),
        ),
        Scenario(
            "traffic-surge",
            "Four times the usual traffic; unit cost flat.",
            traffic_factor=4.0,
            failure_rate=NOISE_FAILURE_RATE,
            rate_limit_rate=0.01,
        ),
        Scenario(
            "traffic-and-prompt",
            "Two causes at once: 30 % more traffic and prompt v4, about 50 % more input tokens per call.",
            traffic_factor=1.3,
            prompt_version="v4",
            prompt_tokens_factor=1.6,
        ),
        Scenario(
            "bad-prompt-rollout",
            "After a minute of healthy traffic prompt v5 ships: a quarter of answers hallucinate "
            "(cite no retrieved document), fail validation, and prompts grow.",
            prompt_version="v5",
            prompt_tokens_factor=1.4,
            app_failure_rate=0.25,
            rollout_after_s=60.0,
        ),
        Scenario(
            "canary",
            "Version 1.5.0 takes 20 % of traffic with a new prompt: nearly twice as long (costlier), less grounded, more failures.",
            canary_share=0.2,
            canary_version="1.5.0",
            canary_prompt_version="v4",
            canary_prompt_tokens_factor=1.8,
            canary_failure_rate=0.15,
            canary_groundedness_drop=0.2,
        ),
        Scenario(
            "agent-loop",
            "Version 1.5.0 of the triage agent takes 30 % of traffic and, in half of its runs, looks the "
            "same order up eight times: the demo policy's loop rule flags them and the gate fails the canary.",
            agent_share=0.5,
            canary_share=0.3,
            canary_version="1.5.0",
            canary_agent_loop_rate=0.5,
        ),
        Scenario(
            "latency-spike",
            "The provider slows down by 8 s on every chat call; the service gives a call 5 s, so "
            "answers time out and ask runs fail.",
            extra_latency_s=8.0,
            fault_models=("gpt-4o-mini", "gpt-4.1"),
            request_timeout_s=5.0,
        ),
        Scenario(
            "rate-limit-storm",
            "The provider answers 429 to 70 % of chat calls on both models; the service's two retries "
            "with backoff are not enough for a third of calls, and those runs fail.",
            rate_limit_rate=0.7,
            fault_models=("gpt-4o-mini", "gpt-4.1"),
        ),
        Scenario(
            "retrieval-empty",
            "The vector index returns nothing for 40 % of searches (an emptied index): the service "
            "refuses to answer without context and those ask runs fail.",
            failure_rate=NOISE_FAILURE_RATE,
            rate_limit_rate=0.01,
            retrieval_empty_rate=0.4,
        ),
        Scenario(
            "agent-denied-tool",
            "A fifth of triage-agent runs issue a refund, a tool the demo policy denies the agent: "
            "violations on those runs burn the triage-policy SLO.",
            agent_share=0.5,
            agent_denied_tool_rate=0.2,
        ),
        Scenario(
            "gpu-saturation",
            "The GPU pool's utilisation climbs past 90 % within 20 minutes and stays near 97 %: requests "
            "queue, inference latency grows, and the triage agent's model calls slow down by 4 s each, so "
            "triage runs miss their 20 s bound (the triage SLO names the GPU and latency SLOs as burning).",
            failure_rate=NOISE_FAILURE_RATE,
            rate_limit_rate=0.01,
            gpu_util_peak=97.0,
            extra_latency_s=4.0,
            fault_models=("gpt-4.1",),
        ),
        Scenario(
            "stale-features",
            "The feature store's materialisation stops: the customer_orders view's freshness gauge stops "
            "advancing, and after 30 minutes every minute of it is stale.",
            failure_rate=NOISE_FAILURE_RATE,
            rate_limit_rate=0.01,
            features_stale=True,
        ),
        Scenario(
            "late-batch",
            "The nightly feature job overruns: for the last three nights it ran past 06:00 and the "
            "scheduler killed it at the deadline, so no run finished on time (and tonight's misses too).",
            failure_rate=NOISE_FAILURE_RATE,
            rate_limit_rate=0.01,
            batch_missed_nights=3,
        ),
    )
})


def get_scenario(scenario: Scenario | str) -> Scenario:
    """A scenario by name (or the scenario itself)."""
    if isinstance(scenario, Scenario):
        return scenario
    try:
        return SCENARIOS[scenario]
    except KeyError:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}") from None
