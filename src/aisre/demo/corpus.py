"""The support-bot's world as data: documents, questions, answer phrases and users.

Plain constants so the simulator's text is realistic without any model or network.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Doc:
    """One support document in the fake vector store."""

    id: str
    title: str
    content: str


DOCS: tuple[Doc, ...] = (
    Doc("kb-101", "Shipping times",
        "Standard orders ship within two business days and arrive in three to five days. "
        "Express orders ship the same day when placed before noon."),
    Doc("kb-102", "Tracking an order",
        "Every shipped order has a tracking number in the confirmation email. "
        "Tracking updates can take up to twenty four hours to appear."),
    Doc("kb-103", "Refund policy",
        "Refunds are issued to the original payment method within seven days of the "
        "returned item reaching our warehouse."),
    Doc("kb-104", "Returns",
        "Items can be returned within thirty days in their original packaging. "
        "Print a prepaid label from the orders page."),
    Doc("kb-105", "Damaged items",
        "If an item arrives damaged, send a photo within forty eight hours and we will "
        "ship a replacement at no cost."),
    Doc("kb-106", "Changing an address",
        "The delivery address can be changed until the order ships. After that, contact "
        "the carrier with the tracking number."),
    Doc("kb-107", "Payment methods",
        "We accept credit cards, debit cards and bank transfers. Payment is taken when "
        "the order ships, not when it is placed."),
    Doc("kb-108", "Cancelling an order",
        "Orders can be cancelled free of charge until they ship. Cancelled orders are "
        "refunded within three days."),
    Doc("kb-109", "Warranty",
        "Electronics carry a two year warranty covering manufacturing defects but not "
        "accidental damage."),
    Doc("kb-110", "Account security",
        "Reset a forgotten password from the sign in page. We never ask for your "
        "password by email or phone."),
    Doc("kb-111", "International delivery",
        "We ship to forty countries. Customs duties are paid by the recipient and are "
        "not included in the order total."),
    Doc("kb-112", "Order status meanings",
        "Processing means the warehouse is picking items, shipped means the carrier has "
        "the parcel, delivered means it reached the address."),
)

# {order} is filled with an order number so tool calls have something to look up.
QUESTIONS: tuple[str, ...] = (
    "Where is my order #{order}? It was supposed to arrive yesterday.",
    "How long does a refund take after I return order #{order}?",
    "Can I still change the delivery address for order #{order}?",
    "My package for order #{order} arrived damaged, what should I do?",
    "I want to cancel order #{order}, is that still possible?",
    "What does the status shipped mean for order #{order}?",
    "Do I have to pay customs duties on order #{order} to Canada?",
    "Is the headphone in order #{order} covered by the warranty?",
    "How do I return the shoes from order #{order}?",
    "When will you charge my card for order #{order}?",
)

TRIAGE_ISSUES: tuple[str, ...] = (
    "Customer reports order #{order} never arrived and tracking has not moved for a week.",
    "Customer was charged twice for order #{order} and wants the duplicate refunded.",
    "Customer received the wrong item in order #{order} and needs an exchange.",
    "Customer says the replacement for order #{order} is also damaged.",
)

ANSWER_PHRASES: tuple[str, ...] = (
    "Thanks for reaching out about your order.",
    "According to our records the parcel left the warehouse on schedule.",
    "Standard delivery usually takes three to five business days.",
    "You can follow the parcel with the tracking number in your confirmation email.",
    "Refunds go back to the original payment method within seven days.",
    "If anything arrived damaged, a photo is all we need to send a replacement.",
    "The delivery address can still be changed because the order has not shipped.",
    "I have checked the order and everything looks in order on our side.",
    "Please let me know if there is anything else I can help you with.",
    "Customs duties are collected by the carrier on delivery.",
    "Your warranty covers manufacturing defects for two years.",
    "I have opened a ticket so our team can follow up with you directly.",
)

ASK_INSTRUCTIONS = (
    "You are the support assistant for an online shop. Answer the customer's question "
    "using only the documents below. Be concise and friendly. If the answer depends on a "
    "specific order, call the lookup_order tool first. Never invent order details."
)

TRIAGE_INSTRUCTIONS = (
    "You are the triage agent. Investigate the customer issue with the tools available: "
    "look up the order, search the knowledge base for the relevant policy, and open a "
    "ticket with a clear summary and priority. Finish with a one paragraph handover note."
)

# Extra guidance a longer prompt template carries; repeated to scale prompt size.
PROMPT_PADDING = (
    "Example: when a customer asks about a late parcel, first confirm the order number, then "
    "check the shipping status, then explain the expected delivery window and offer tracking "
    "help. Always restate the policy in plain words and avoid internal jargon."
)


def order_number(rng: random.Random) -> int:
    """A plausible order number."""
    return rng.randint(10_000, 99_999)


def user_id(rng: random.Random) -> str:
    """One of a few hundred returning users."""
    return f"user-{rng.randint(1, 400):04d}"


def session_id(rng: random.Random) -> str:
    """A fresh session identifier."""
    return f"sess-{rng.getrandbits(48):012x}"


def answer_text(rng: random.Random, words: int) -> str:
    """About ``words`` words of support-bot prose."""
    out: list[str] = []
    while len(out) < words:
        out.extend(rng.choice(ANSWER_PHRASES).split())
    return " ".join(out[: max(words, 1)])
