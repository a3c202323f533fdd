"""What the store holds, as plain records, and the checks every record passes before it does."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lmrec.errors import InputError
from lmrec.serve import tables as t

EVENT_TYPES: tuple[str, ...] = ("view", "click", "like", "dislike", "rating", "purchase")


@dataclass(frozen=True)
class EventRecord:
    """One user interaction.

    Attributes:
        event_id: Client-chosen unique ID; resending it is a no-op (idempotent ingest).
        user_id: External user ID.
        item_id: External item ID.
        type: One of `EVENT_TYPES`.
        ts: When it happened, timezone-aware (returned in UTC).
        value: The rating or other amount, when the type has one.
        recommendation_id: The recommendation response that led to it, if any.
        seq: Store-assigned insertion order (monotonic); None before the event is stored.
    """

    event_id: str
    user_id: str
    item_id: str
    type: str
    ts: datetime
    value: float | None = None
    recommendation_id: str | None = None
    seq: int | None = None


@dataclass(frozen=True)
class IngestResult:
    """Outcome of `Store.add_events`.

    Attributes:
        accepted: Event IDs newly stored, in input order.
        duplicates: Event IDs already stored or repeated earlier in the same batch, in input
            order (a repeated ID appears once per repeat).
    """

    accepted: list[str]
    duplicates: list[str]


@dataclass(frozen=True)
class UserRecord:
    """A user's profile as stored by the service."""

    user_id: str
    profile_text: str | None
    attributes: dict[str, Any]
    updated_at: datetime


@dataclass(frozen=True)
class ItemRecord:
    """A catalog change made through the service; ``deleted`` rows are tombstones."""

    item_id: str
    fields: dict[str, Any]
    deleted: bool
    updated_at: datetime


def user_hash(user_id: str) -> str:
    """The SHA-256 hex digest recorded for a forgotten user."""
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()


def check_id(value: object, column: str, max_length: int = t.ID_LENGTH) -> None:
    if not isinstance(value, str) or not value:
        raise InputError(f"{column} must be a non-empty string, got {value!r}", column=column)
    if len(value) > max_length:
        raise InputError(
            f"{column} is longer than {max_length} characters: {value[:40]!r}...", column=column
        )


def check_event(event: EventRecord, i: int) -> None:
    """Reject an event that the schema or the models cannot hold, naming the field."""
    try:
        check_id(event.event_id, "event_id")
        check_id(event.user_id, "user_id")
        check_id(event.item_id, "item_id")
        if event.type not in EVENT_TYPES:
            raise InputError(
                f"type must be one of {', '.join(EVENT_TYPES)}, got {event.type!r}", column="type"
            )
        if not isinstance(event.ts, datetime) or event.ts.utcoffset() is None:
            # a naive time is ambiguous: refuse it rather than guess the sender's zone
            raise InputError(f"ts must be a timezone-aware datetime, got {event.ts!r}", column="ts")
        if event.value is not None and (
            isinstance(event.value, bool)
            or not isinstance(event.value, int | float)
            or not math.isfinite(event.value)
        ):
            raise InputError(f"value must be a finite number or None, got {event.value!r}")
        if event.recommendation_id is not None:
            check_id(event.recommendation_id, "recommendation_id", t.RECOMMENDATION_ID_LENGTH)
    except InputError as e:
        raise InputError(f"event {i} ({event.event_id!r}): {e.message}", column=e.column) from None


def check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InputError(f"limit must be a non-negative integer, got {limit!r}", column="limit")


def check_json(value: object, column: str) -> None:
    """A JSON object that both backends accept (PostgreSQL's json refuses NaN)."""
    if not isinstance(value, dict):
        raise InputError(f"{column} must be a JSON object (dict), got {value!r}", column=column)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InputError(f"{column} is not valid JSON: {e}", column=column) from None
