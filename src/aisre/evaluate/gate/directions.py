"""Which way is bad for a score, from its name, when the gate file does not say.

Scores arrive by name (``POST /api/scores``, ``aisre.score.<name>`` span attributes,
``gen_ai.evaluation.result`` events with ``gen_ai.evaluation.name``), and nothing in them says
whether a higher value is better. Quality measures (groundedness, relevance, faithfulness,
correctness, helpfulness, RAGAS' answer_relevancy and context_precision/recall, user feedback) are
higher-is-better; harm measures (hallucination, toxicity, bias, harmfulness, guardrail trips and
violations) are higher-is-worse. A name is split into words (``answer_relevancy``,
``ragas.faithfulness``, ``guardrailTrips``) and judged by the words it holds; a negation
(``non_toxic``, ``hallucination_free``) turns a harm word into a quality one.
"""

from __future__ import annotations

import re
from enum import StrEnum

from aisre.evaluate.gate.classifier import Direction


class Better(StrEnum):
    """Which values of a score are good."""

    HIGHER = "higher"
    LOWER = "lower"

    @property
    def bad_direction(self) -> Direction:
        """The change that counts against a candidate."""
        return Direction.DECREASE if self is Better.HIGHER else Direction.INCREASE


_HIGHER_IS_WORSE = frozenset({
    "hallucination", "hallucinations", "hallucinated", "hallucinating", "toxicity", "toxic", "bias", "biased",
    "harmfulness", "harmful", "harm", "harms", "guardrail", "guardrails", "violation", "violations", "violated",
    "jailbreak", "jailbreaks", "unsafe", "pii", "leak", "leaks", "leakage", "downvote", "downvotes", "dislike",
    "dislikes", "profanity", "insult", "threat", "sexual", "violence", "selfharm",
})
_HIGHER_IS_BETTER = frozenset({
    "groundedness", "grounded", "relevance", "relevancy", "relevant", "faithfulness", "faithful", "correctness",
    "correct", "accuracy", "helpfulness", "helpful", "precision", "recall", "feedback", "thumbs", "thumbsup",
    "upvote", "upvotes", "like", "likes", "rating", "satisfaction", "csat", "coherence", "fluency", "quality",
    "completeness", "similarity", "f1", "bleu", "rouge", "pass", "passed", "safe", "safety",
})
_NEGATIONS = frozenset({"no", "non", "not", "free", "without", "absence"})
# Guardrail and thumbs names say which way in a second word.
_PASSING = frozenset({"pass", "passed", "passes", "ok", "clean"})
_DOWN = frozenset({"down", "thumbsdown"})


def words(name: str) -> list[str]:
    """The lower-case words of a score name: ``answerRelevancy`` and ``answer_relevancy`` alike."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def known_better(name: str) -> Better | None:
    """Whether higher is better for a score of this name, or None when the name says nothing."""
    ws = set(words(name))
    if ws & _DOWN:
        return Better.LOWER
    harm = ws & _HIGHER_IS_WORSE
    if harm:
        # "guardrail_pass_rate" and "non_toxic" count what went right.
        if ws & _NEGATIONS or ws & _PASSING:
            return Better.HIGHER
        return Better.LOWER
    if ws & _HIGHER_IS_BETTER:
        return Better.HIGHER
    return None
