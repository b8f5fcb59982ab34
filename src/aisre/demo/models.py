"""The fake provider's models as data (no server imports, so scenarios and `aisre demo --help`
can name them cheaply)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CHAT_MODELS", "MODELS", "ModelProfile"]


@dataclass(frozen=True)
class ModelProfile:
    """How a fake model behaves when healthy."""

    kind: str  # "chat" or "embeddings"
    median_latency_s: float
    latency_sigma: float = 0.35
    answer_words: int = 0  # median length of a text answer
    dimensions: int = 0


MODELS: dict[str, ModelProfile] = {
    "gpt-4o-mini": ModelProfile("chat", 0.4, answer_words=45),
    "gpt-4.1": ModelProfile("chat", 0.9, answer_words=70),
    "text-embedding-3-small": ModelProfile("embeddings", 0.03, 0.3, dimensions=1536),
}
CHAT_MODELS: tuple[str, ...] = tuple(m for m, p in MODELS.items() if p.kind == "chat")
