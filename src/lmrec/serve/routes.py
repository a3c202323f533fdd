"""API routes: events, recommendations, items, users."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response

from lmrec.errors import InputError
from lmrec.serve.schemas import (
    ERROR_RESPONSES,
    DeletedUserOut,
    EventBatch,
    EventIn,
    EventOut,
    EventsBody,
    EventsOut,
    ExplainedItem,
    ExplanationsOut,
    GenerateIn,
    GenerateOut,
    Id,
    IngestOut,
    ItemIn,
    ItemOut,
    ProfileOut,
    RecommendationsOut,
    ScoredItem,
    SimilarOut,
    UserIn,
)
from lmrec.serve.security import require
from lmrec.serve.settings import ServeSettings
from lmrec.serve.state import ServingState, item_frame
from lmrec.serve.storage import EventRecord

router = APIRouter(responses=ERROR_RESPONSES)
client = Depends(require("client"))
admin = Depends(require("admin"))
UserPath = Annotated[str, Path(min_length=1, max_length=128)]
ItemPath = Annotated[str, Path(min_length=1, max_length=128)]


def _state(request: Request) -> ServingState:
    return request.app.state.serving


def _settings(request: Request) -> ServeSettings:
    return request.app.state.settings


def _check_id(value: str, kind: str) -> str:
    # path parameters skip the body validators: run the same checks
    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(Id).validate_python(value)
    except ValidationError as e:
        raise HTTPException(422, f"{kind}: {e.errors()[0]['msg']}") from None


# -- events --------------------------------------------------------------------------------
@router.post("/events", response_model=IngestOut, tags=["events"], dependencies=[client])
def post_events(body: EventsBody, request: Request) -> IngestOut:
    """Record one event or a batch; acknowledged means durably stored.

    Idempotent on ``event_id``: a resent event is reported as a duplicate and not counted
    again. A batch is all or nothing: if any event is invalid, none is stored.
    """
    settings, state = _settings(request), _state(request)
    events = body.events if isinstance(body, EventBatch) else [body]
    if len(events) > settings.max_batch:
        raise HTTPException(413, f"events: at most {settings.max_batch} per request")
    now = datetime.now(UTC)
    latest = now + timedelta(seconds=settings.future_skew_s)
    for i, ev in enumerate(events):
        if ev.timestamp is not None and ev.timestamp > latest:
            raise HTTPException(
                422, f"events[{i}].timestamp: {ev.timestamp.isoformat()} is in the future"
            )
    online = state.current
    unknown = sorted({ev.item_id for ev in events if not online.has_item(ev.item_id)})
    if unknown:
        if settings.unknown_items == "reject":
            shown = ", ".join(repr(i) for i in unknown[:5])
            raise HTTPException(404, f"item_id: unknown item(s) {shown}; nothing was stored")
        _create_bare_items(state, unknown)
    records = [_record(ev, now) for ev in events]
    result = state.ingest(records)
    request.app.state.metrics.events(len(result.accepted), len(result.duplicates))
    return IngestOut(
        accepted=len(result.accepted),
        duplicates=len(result.duplicates),
        duplicate_ids=result.duplicates,
    )


def _record(ev: EventIn, now: datetime) -> EventRecord:
    return EventRecord(
        event_id=ev.event_id,
        user_id=ev.user_id,
        item_id=ev.item_id,
        type=ev.type,
        ts=ev.timestamp or now,
        value=ev.value,
        recommendation_id=ev.recommendation_id,
    )


def _create_bare_items(state: ServingState, item_ids: list[str]) -> None:
    online = state.current
    if not online.can_add_items:
        raise HTTPException(
            409, f"item_id: unknown item(s) and model '{online.name}' cannot add items"
        )
    for iid in item_ids:
        state.store.upsert_item(iid, {"title": iid})
    online.add_items(item_frame([(iid, {"title": iid}) for iid in item_ids]))


# -- recommendations -----------------------------------------------------------------------
@router.get(
    "/users/{user_id}/recommendations",
    response_model=RecommendationsOut,
    tags=["recommendations"],
    dependencies=[client],
)
def recommendations(
    user_id: UserPath,
    request: Request,
    k: Annotated[int, Query(ge=1, le=1000)] = 10,
    exclude_seen: bool = True,
    explain: bool = False,
    language: Literal["en", "zh"] = "en",
) -> RecommendationsOut:
    """Top-k items for a user; unknown users get cold-start lists (profile text or popular).

    With ``explain=true`` every item carries an evidence-based explanation (slower: fetch
    them later by ``recommendation_id`` to keep lists fast).
    """
    settings, state = _settings(request), _state(request)
    _check_id(user_id, "user_id")
    if k > settings.max_k:
        raise HTTPException(422, f"k: at most {settings.max_k}")
    profile = state.store.get_user(user_id)
    online = state.current
    items, cold = online.recommend(
        user_id,
        k,
        exclude_seen=exclude_seen,
        profile_text=profile.profile_text if profile else None,
    )
    rid = state.remember(user_id, [i for i, _, _ in items])
    scored = [
        ScoredItem(item_id=i, rank=r + 1, score=s, title=t) for r, (i, s, t) in enumerate(items)
    ]
    if explain and scored:
        texts = _explanations(request, online, user_id, [i.item_id for i in scored], language)
        for item, ex in zip(scored, texts, strict=True):
            item.explanation, item.evidence = ex["explanation"], ex["evidence"]
    return RecommendationsOut(
        user_id=user_id, recommendation_id=rid, model=online.version, cold_start=cold, items=scored
    )


def _explanations(
    request: Request, online: Any, user_id: str, item_ids: list[str], language: str
) -> list[dict[str, Any]]:
    try:
        explainer = request.app.state.explainers.for_model(online)
    except ValueError as e:
        raise HTTPException(409, str(e)) from None
    lang = "zh" if language == "zh" else "en"
    return explainer.explain(user_id, item_ids, lang)


@router.post(
    "/recommendations/generate",
    response_model=GenerateOut,
    tags=["recommendations"],
    dependencies=[client],
)
def generate(body: GenerateIn, request: Request) -> GenerateOut:
    """LLM recommendations grounded to the catalog: real items, new to the user, no repeats.

    The user's history (fitted and online) and latest likes / dislikes from stored events
    go into the prompt and the shortlist, so a dislike changes the next list. A failing or
    slow LLM falls back to the retriever's order (``fallback: true``), never a hang.
    """
    from lmrec.serve.generation import generate_for, generation_meta

    state = _state(request)
    online = state.current
    try:
        gen = request.app.state.generators.for_model(online)
        explainer = request.app.state.explainers.for_model(online)
    except ValueError as e:
        raise HTTPException(409, str(e)) from None
    history = explainer.history(body.user_id)
    events = state.store.user_events(body.user_id, limit=200)
    text = body.request
    if not (text and text.strip()) and not history:
        profile = state.store.get_user(body.user_id)
        text = profile.profile_text if profile and profile.profile_text else None
    if not (text and text.strip()) and not history and not events:
        raise HTTPException(
            422, f"user_id: {body.user_id!r} has no history or profile text; send a request"
        )
    try:
        deleted = [str(i) for i in online.items.to_ids(sorted(online.deleted))]
        out, react = generate_for(gen, history, events, body.k, text, body.language, deleted)
    except InputError as e:
        raise HTTPException(422, str(e)) from None
    rid = state.remember(body.user_id, out.items)
    titles = gen.catalog
    scored = [
        ScoredItem(item_id=i, rank=r + 1, score=float(len(out.items) - r), title=titles.title(i))
        for r, i in enumerate(out.items)
    ]
    if body.explain and scored:
        texts = _explanations(request, online, body.user_id, out.items, body.language)
        for item, ex in zip(scored, texts, strict=True):
            item.explanation, item.evidence = ex["explanation"], ex["evidence"]
    return GenerateOut(
        user_id=body.user_id,
        recommendation_id=rid,
        model=online.version,
        cold_start=not history,
        items=scored,
        liked=react.liked,
        disliked=react.disliked,
        **generation_meta(out),
    )


@router.get(
    "/recommendations/{recommendation_id}/explanations",
    response_model=ExplanationsOut,
    tags=["recommendations"],
    dependencies=[client],
)
def explanations(
    recommendation_id: Annotated[str, Path(min_length=1, max_length=64)],
    request: Request,
    language: Literal["en", "zh"] = "en",
) -> ExplanationsOut:
    """Explanations of a list served earlier (lazy: the list itself stays fast)."""
    state = _state(request)
    served = state.served(recommendation_id)
    if served is None:
        raise HTTPException(404, f"recommendation_id: unknown or expired {recommendation_id!r}")
    online = state.current
    items = [i for i in served.items if online.has_item(i)]
    texts = _explanations(request, online, served.user_id, items, language)
    return ExplanationsOut(
        recommendation_id=recommendation_id,
        user_id=served.user_id,
        items=[
            ExplainedItem(
                item_id=ex["item_id"],
                title=online.title(int(online.items.lookup([ex["item_id"]])[0])),
                explanation=ex["explanation"],
                source=ex["source"],
                evidence=ex["evidence"],
            )
            for ex in texts
        ],
    )


@router.get(
    "/items/{item_id}/similar", response_model=SimilarOut, tags=["items"], dependencies=[client]
)
def similar(
    item_id: ItemPath, request: Request, k: Annotated[int, Query(ge=1, le=1000)] = 10
) -> SimilarOut:
    """Items most like ``item_id``."""
    settings, state = _settings(request), _state(request)
    _check_id(item_id, "item_id")
    if k > settings.max_k:
        raise HTTPException(422, f"k: at most {settings.max_k}")
    try:
        items = state.current.similar(item_id, k)
    except InputError as e:
        raise HTTPException(409, str(e)) from None
    return SimilarOut(
        item_id=item_id,
        items=[
            ScoredItem(item_id=i, rank=r + 1, score=s, title=t) for r, (i, s, t) in enumerate(items)
        ],
    )


# -- catalog -------------------------------------------------------------------------------
@router.put("/items/{item_id}", response_model=ItemOut, tags=["items"], dependencies=[admin])
def put_item(item_id: ItemPath, body: ItemIn, request: Request) -> ItemOut:
    """Add or replace an item; it is embedded and recommendable at once."""
    state = _state(request)
    _check_id(item_id, "item_id")
    online = state.current
    if not online.can_add_items:
        raise HTTPException(409, f"model '{online.name}' cannot add items without retraining")
    fields: dict[str, Any] = body.model_dump(exclude_none=True)
    frame = item_frame([(item_id, fields)])
    online.add_items(frame)  # embed first: a text the encoder rejects must not be stored
    state.store.upsert_item(item_id, fields)
    return ItemOut(item_id=item_id, fields=fields, in_model=online.has_item(item_id))


@router.delete("/items/{item_id}", status_code=204, tags=["items"], dependencies=[admin])
def delete_item(item_id: ItemPath, request: Request) -> Response:
    """Stop recommending an item (kept as a tombstone so retraining drops it too)."""
    state = _state(request)
    _check_id(item_id, "item_id")
    online = state.current
    if not online.has_item(item_id):
        raise HTTPException(404, f"item_id: unknown item {item_id!r}")
    state.store.delete_item(item_id)
    online.delete_item(item_id)
    return Response(status_code=204)


# -- users ---------------------------------------------------------------------------------
@router.put("/users/{user_id}", response_model=ProfileOut, tags=["users"], dependencies=[client])
def put_user(user_id: UserPath, body: UserIn, request: Request) -> ProfileOut:
    """Set a user's profile text and attributes (the text drives cold-start lists)."""
    state = _state(request)
    _check_id(user_id, "user_id")
    stored = state.store.get_user(user_id)
    text = body.profile_text
    if "profile_text" not in body.model_fields_set and stored is not None:
        text = stored.profile_text
    attributes = body.attributes
    if attributes is None:
        attributes = stored.attributes if stored is not None else {}
    state.store.upsert_user(user_id, text, attributes)
    return _profile(state, user_id)


@router.get(
    "/users/{user_id}/profile", response_model=ProfileOut, tags=["users"], dependencies=[client]
)
def get_profile(user_id: UserPath, request: Request) -> ProfileOut:
    """Stored profile plus an interpretable portrait of the user's taste."""
    state = _state(request)
    _check_id(user_id, "user_id")
    return _profile(state, user_id)


def _profile(state: ServingState, user_id: str) -> ProfileOut:
    from lmrec.rank.profile import profile_for

    record = state.store.get_user(user_id)
    online = state.current
    ov = online.overlays.get(user_id)
    forgotten = bool(ov and ov.forgotten)
    uidx = -1 if forgotten else int(online.users.lookup([user_id])[0])
    portrait = None
    if uidx >= 0:
        try:
            portrait = profile_for(online.model, user_id).to_dict()
        except Exception:  # a model without attributes has no portrait
            portrait = None
    return ProfileOut(
        user_id=user_id,
        profile_text=record.profile_text if record else None,
        attributes=record.attributes if record else {},
        known_to_model=uidx >= 0,
        history_in_model=int(online.history_len[uidx]) if uidx >= 0 else 0,
        events_stored=state.store.count_events(user_id),
        portrait=portrait,
    )


@router.get(
    "/users/{user_id}/events", response_model=EventsOut, tags=["users"], dependencies=[client]
)
def user_events(
    user_id: UserPath,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> EventsOut:
    """The user's stored events, newest first (page with ``before``)."""
    state = _state(request)
    _check_id(user_id, "user_id")
    rows = state.store.user_events(user_id, limit=limit, before_seq=before)
    return EventsOut(
        user_id=user_id,
        events=[
            EventOut(
                event_id=r.event_id,
                item_id=r.item_id,
                type=r.type,
                value=r.value,
                timestamp=r.ts,
                recommendation_id=r.recommendation_id,
                seq=r.seq or 0,
            )
            for r in rows
        ],
        next_before=rows[-1].seq if len(rows) == limit else None,
    )


@router.delete(
    "/users/{user_id}", response_model=DeletedUserOut, tags=["users"], dependencies=[admin]
)
def delete_user(user_id: UserPath, request: Request) -> DeletedUserOut:
    """Erase the user's events and profile (right to be forgotten).

    Their fitted history stops being used at once and is dropped at the next retrain.
    """
    state = _state(request)
    _check_id(user_id, "user_id")
    return DeletedUserOut(user_id=user_id, deleted_events=state.forget_user(user_id))
