"""Request and response bodies of the HTTP API (the OpenAPI schema is built from these)."""

from __future__ import annotations

import math
import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from lmrec.serve.storage import EVENT_TYPES

MAX_ID = 128
MAX_TEXT = 10_000
MAX_ATTRIBUTES = 64


def _clean_text(v: str) -> str:
    # NUL and lone surrogates cannot be stored (PostgreSQL rejects NUL, UTF-8 rejects
    # surrogates): refuse them here as a 422 instead of a 500 at insert time
    if "\x00" in v:
        raise ValueError("must not contain NUL characters")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return v


def _clean_id(v: str) -> str:
    _clean_text(v)
    if v != v.strip():
        raise ValueError("must not start or end with whitespace")
    if "/" in v:
        # an ID must be usable as one URL path segment (/users/{id}, /items/{id})
        raise ValueError("must not contain '/'")
    bad = [c for c in v if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]
    if bad:
        raise ValueError(f"must not contain control characters (found {bad[0]!r})")
    return v


#: A user, item or event ID: 1-128 printable characters, any script.
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID), AfterValidator(_clean_id)]
Text = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_clean_text)]
ShortText = Annotated[str, Field(max_length=1_000), AfterValidator(_clean_text)]
AttrValue = (
    Annotated[float, Field(allow_inf_nan=False)]
    | bool
    | ShortText
    | Annotated[list[ShortText], Field(max_length=100)]
)
EventType = Literal["view", "click", "like", "dislike", "rating", "purchase"]
assert set(EventType.__args__) == set(EVENT_TYPES)  # type: ignore[attr-defined]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventIn(Strict):
    """One thing a user did to an item."""

    event_id: Id = Field(description="Client-made unique ID; resending it is a no-op.")
    user_id: Id
    item_id: Id
    type: EventType
    value: float | None = Field(
        None,
        allow_inf_nan=False,
        ge=-1e6,
        le=1e6,
        description="Rating for type 'rating'; an optional weight otherwise.",
    )
    timestamp: datetime | None = Field(
        None, description="When it happened (ISO 8601; naive means UTC). Default: now."
    )
    recommendation_id: Id | None = Field(None, description="The list this event came from.")

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return v
        v = v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
        if v.year < 1990:
            raise ValueError("must be after 1990-01-01")
        return v

    @model_validator(mode="after")
    def _rating_value(self) -> EventIn:
        if self.type == "rating" and (self.value is None or not math.isfinite(self.value)):
            raise ValueError("a 'rating' event needs a numeric value")
        return self


class EventBatch(Strict):
    """Many events in one request: one transaction, acknowledged together."""

    events: list[EventIn] = Field(min_length=1)


def _event_kind(v: Any) -> str:
    return "batch" if isinstance(v, dict) and "events" in v else "event"


EventsBody = Annotated[
    Annotated[EventIn, Tag("event")] | Annotated[EventBatch, Tag("batch")],
    Discriminator(_event_kind),
]


class IngestOut(BaseModel):
    """What the store acknowledged: every event here is durable."""

    accepted: int
    duplicates: int
    duplicate_ids: list[str] = Field(description="Event IDs that were already stored.")


class ScoredItem(BaseModel):
    item_id: str
    rank: int
    score: float
    title: str | None = None
    explanation: str | None = Field(None, description="With ?explain=true.")
    evidence: dict[str, Any] | None = Field(None, description="What the explanation rests on.")


class ExplainedItem(BaseModel):
    item_id: str
    title: str | None
    explanation: str
    source: str = Field(description="llm (its draft passed the faithfulness check) or template.")
    evidence: dict[str, Any]


class ExplanationsOut(BaseModel):
    recommendation_id: str
    user_id: str
    items: list[ExplainedItem]


class RecommendationsOut(BaseModel):
    user_id: str
    recommendation_id: str = Field(description="Quote it in events from this list.")
    model: str
    cold_start: bool = Field(description="True when the user has no history the model knows.")
    items: list[ScoredItem]


class GenerateIn(Strict):
    """What to generate: for whom, how many, and an optional typed request."""

    user_id: Id
    k: int = Field(10, ge=1, le=50, description="List length.")
    request: ShortText | None = Field(
        None, description="A typed request, e.g. 'a 90s animated comedy' (at most 1,000 chars)."
    )
    language: Literal["en", "zh"] = "en"
    explain: bool = Field(False, description="Explain every item now (slower than lazily).")


class GenerateOut(RecommendationsOut):
    grounded: int = Field(description="Items the LLM proposed that grounding kept.")
    filled: int = Field(description="Items topped up from the retriever's order.")
    backend: str = Field(description="The backend that answered (template after a fallback).")
    fallback: bool = Field(description="True when the configured LLM failed or timed out.")
    liked: list[str] = Field(description="Liked items from stored events used in the prompt.")
    disliked: list[str] = Field(description="Disliked items from stored events (excluded).")
    problems: list[str] = Field(description="What was wrong with the LLM's answer, if anything.")
    seconds: float


class SimilarOut(BaseModel):
    item_id: str
    items: list[ScoredItem]


def _not_blank(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be empty or only spaces")
    return v


class ItemIn(Strict):
    """A catalog item; text fields are embedded so it is recommendable at once."""

    title: Annotated[ShortText, AfterValidator(_not_blank)]
    description: Text | None = None
    genres: Annotated[list[ShortText], Field(max_length=50)] | None = None
    attributes: Annotated[dict[Id, AttrValue], Field(max_length=MAX_ATTRIBUTES)] = Field(
        default_factory=dict
    )


class ItemOut(BaseModel):
    item_id: str
    fields: dict[str, Any]
    in_model: bool


class UserIn(Strict):
    """Profile text and attributes (e.g. age band, country); a field left out is kept."""

    profile_text: Text | None = Field(None, description="Left out: keep; null: clear.")
    attributes: Annotated[dict[Id, AttrValue], Field(max_length=MAX_ATTRIBUTES)] | None = Field(
        None, description="Left out or null: keep the stored attributes."
    )


class EventOut(BaseModel):
    event_id: str
    item_id: str
    type: str
    value: float | None
    timestamp: datetime
    recommendation_id: str | None
    seq: int


class EventsOut(BaseModel):
    user_id: str
    events: list[EventOut] = Field(description="Newest first.")
    next_before: int | None = Field(description="Pass as ?before= for the next page.")


class ProfileOut(BaseModel):
    user_id: str
    profile_text: str | None
    attributes: dict[str, Any]
    known_to_model: bool
    history_in_model: int
    events_stored: int
    portrait: dict[str, Any] | None = Field(
        description="Top genres/decades/entities with shares, activity level and a summary."
    )


class DeletedUserOut(BaseModel):
    user_id: str
    deleted_events: int


class ErrorDetail(BaseModel):
    loc: list[str]
    msg: str


class ErrorOut(BaseModel):
    """Every 4xx: ``detail`` names the field and what is wrong with it."""

    detail: str
    errors: list[ErrorDetail] | None = Field(None, description="Each invalid field (422).")


#: The error answers every route documents (status -> schema).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in (
        (401, "Missing or wrong API key"),
        (403, "The key's role may not do this"),
        (404, "Unknown user, item or event target"),
        (409, "The served model cannot do this"),
        (413, "Body or batch too large"),
        (422, "Invalid input; detail names the field"),
    )
}


class StatusOut(BaseModel):
    status: str
    detail: dict[str, Any] = Field(default_factory=dict)
