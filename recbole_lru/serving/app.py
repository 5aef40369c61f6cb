"""The HTTP service: a FastAPI app around a :class:`Recommender`.

Routes (a contract: other tools call them):

* ``POST /users/{user}/interactions`` ``{"items": ["<raw item token>", ...]}``: applied in order,
  all or nothing -> ``{"user", "version", "applied"}``; with ``?k=10[&exclude_seen=true]`` the
  answer adds ``"recommendations": {"items", "scores"}`` after these interactions (one round trip
  for "an event arrives, answer with fresh recommendations");
* ``GET /users/{user}/recommendations?k=10&exclude_seen=true`` -> ``{"items": [...], "scores": [...]}``,
  best first;
* ``GET /users/{user}`` -> ``{"user", "version", "items"}`` (the stored history);
* ``POST /batch/interactions`` ``{"events": [{"user", "item"}, ...]}``: all or nothing, one batched
  step per round -> ``{"versions": {user: version}}``; with ``"k"`` (and ``"exclude_seen"``) in the
  body the answer adds ``"results"`` as ``/batch/recommendations`` gives them, one per user;
* ``POST /batch/recommendations`` ``{"users": [...], "k": 10, "exclude_seen": true}`` ->
  ``{"results": [{"user", "items", "scores"}, ...]}``;
* ``GET /health``.

Every error is a JSON body ``{"detail": "<what is wrong>"}``: 422 for an unknown item, a ``k``
out of range or a body that does not parse, 409 when concurrent writers kept a user busy, 503
when the store is unreachable (or holds states of another model).

Handlers check their request (tokens, ``k``) and then, by default, hand it to a
:class:`~.batcher.MicroBatcher`: requests arriving within ``batch_window_ms`` of each other (0, the
default: those already received, and those arriving while the previous batch runs) are served by
one batched step, one commit and one scoring product,
each still all or nothing and in per-user order. ``batch_window_ms=None`` serves every request on
its own in FastAPI's thread pool; the store's compare-and-set orders concurrent writers either way.
"""
from __future__ import annotations

from typing import List, Optional, Union

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictInt, StrictStr

from .batcher import MicroBatcher
from .core import ConflictError, ServingBase, UnknownItemError
from .stores import StoreError

__all__ = ["create_app"]

Token = Union[StrictStr, StrictInt]  # raw tokens are strings; a JSON integer is read as its string


class Interactions(BaseModel):
    items: List[Token] = Field(min_length=1, description="raw item tokens, oldest first")


class Event(BaseModel):
    user: Token
    item: Token


class BatchInteractions(BaseModel):
    events: List[Event] = Field(min_length=1)
    k: Optional[int] = Field(None, description="also answer each user's top k after these events")
    exclude_seen: bool = True


class BatchRecommendations(BaseModel):
    users: List[Token] = Field(min_length=1)
    k: int = 10
    exclude_seen: bool = True


def _describe(errors) -> str:
    parts = []
    for e in errors:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {e.get('msg')}")
    return "invalid request: " + "; ".join(parts)


def _results(users: list[str], recs: list) -> list[dict]:
    return [{"user": u, "items": r.items, "scores": r.scores} for u, r in zip(users, recs)]


def _attach(answer: dict, done: dict, key: str, render) -> dict:
    """``answer`` plus, when ``done`` holds recommendations, ``key`` (rendered, or None with
    ``recommendations_error`` when they could not be computed after the writes)."""
    if "recommendations" in done:
        recs = done["recommendations"]
        answer[key] = None if recs is None else render(recs)
    if "recommendations_error" in done:
        answer["recommendations_error"] = done["recommendations_error"]
    return answer


def create_app(recommender: ServingBase, batch_window_ms: float | None = 0.0, max_batch: int = 256) -> FastAPI:
    """The app over ``recommender``; ``batch_window_ms``: see the module docstring (None: no
    micro-batching)."""
    app = FastAPI(title="recbole-lru serving",
                  description=f"{recommender.bundle.model_name} over {recommender.n_items - 1} items; "
                              f"one state per user, one step per interaction.")
    rec = recommender
    batcher = None if batch_window_ms is None else MicroBatcher(rec, batch_window_ms, max_batch)
    app.state.batcher = batcher

    async def write(users: list[str], ids: list[int]) -> dict[str, int]:
        if batcher is None:
            return await run_in_threadpool(rec.apply_events, users, ids)
        return await batcher.write(users, ids)

    async def read(users: list[str], k: int, exclude_seen: bool) -> list:
        if batcher is None:
            return await run_in_threadpool(rec.recommend_batch, users, k, exclude_seen)
        return await batcher.read(users, k, exclude_seen)

    async def write_then_read(users: list[str], ids: list[int], k: int | None, exclude_seen: bool) -> dict:
        """The writes' answer; with ``k``, also the top-k of their users (in order of first
        appearance) after them. The events are applied first: if the recommendations then fail
        (a store gone), the answer still says what was applied (a client must not resend them),
        with ``recommendations_error`` in place of the recommendations."""
        if k is not None:
            k = rec.check_k(k)  # before anything is applied
        out = {"versions": await write(users, ids)}
        if k is not None:
            try:
                out["recommendations"] = await read(list(dict.fromkeys(users)), k, exclude_seen)
            except (StoreError, ConflictError) as err:
                out["recommendations"], out["recommendations_error"] = None, str(err)
        return out

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return JSONResponse(status_code=422, content={"detail": _describe(exc.errors())})

    @app.exception_handler(UnknownItemError)
    async def _unknown(request: Request, exc: UnknownItemError):
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(ValueError)
    async def _bad_value(request: Request, exc: ValueError):
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(ConflictError)
    async def _conflict(request: Request, exc: ConflictError):
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError):
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    # responses are built as JSONResponse directly: the bodies are plain JSON already, and
    # FastAPI's generic encoder would walk every score again
    @app.get("/health")
    def health():
        return {"status": "ok", "model": rec.bundle.model_name, "n_items": rec.n_items - 1,
                "store": type(rec.store).__name__}

    @app.post("/users/{user}/interactions")
    async def post_interactions(user: str, body: Interactions, k: Optional[int] = Query(None),
                                exclude_seen: bool = Query(True)):
        ids = rec.item_ids([str(i) for i in body.items], where="items")
        done = await write_then_read([user] * len(ids), ids, k, exclude_seen)
        answer = {"user": user, "version": done["versions"][user], "applied": len(ids)}
        return JSONResponse(_attach(answer, done, "recommendations",
                                    lambda recs: {"items": recs[0].items, "scores": recs[0].scores}))

    @app.get("/users/{user}/recommendations")
    async def get_recommendations(user: str, k: int = Query(10), exclude_seen: bool = Query(True)):
        (r,) = await read([user], rec.check_k(k), exclude_seen)
        return JSONResponse({"items": r.items, "scores": r.scores})

    @app.get("/users/{user}")
    def get_user(user: str):
        version, items = rec.history(user)
        return {"user": user, "version": version, "items": items}

    @app.post("/batch/interactions")
    async def post_batch_interactions(body: BatchInteractions):
        users = [str(e.user) for e in body.events]
        ids = rec.item_ids([str(e.item) for e in body.events], where="events")
        done = await write_then_read(users, ids, body.k, body.exclude_seen)
        return JSONResponse(_attach({"versions": done["versions"]}, done, "results",
                                    lambda recs: _results(list(dict.fromkeys(users)), recs)))

    @app.post("/batch/recommendations")
    async def post_batch_recommendations(body: BatchRecommendations):
        users = [str(u) for u in body.users]
        results = await read(users, rec.check_k(body.k), body.exclude_seen)
        return JSONResponse({"results": _results(users, results)})

    return app
