"""The HTTP service: a FastAPI app around a :class:`Recommender`.

Routes (a contract: other tools call them):

* ``POST /users/{user}/interactions`` ``{"items": ["<raw item token>", ...]}``: applied in order,
  all or nothing -> ``{"user", "version", "applied"}``;
* ``GET /users/{user}/recommendations?k=10&exclude_seen=true`` -> ``{"items": [...], "scores": [...]}``,
  best first;
* ``GET /users/{user}`` -> ``{"user", "version", "items"}`` (the stored history);
* ``POST /batch/interactions`` ``{"events": [{"user", "item"}, ...]}``: all or nothing, one batched
  step per round -> ``{"versions": {user: version}}``;
* ``POST /batch/recommendations`` ``{"users": [...], "k": 10, "exclude_seen": true}`` ->
  ``{"results": [{"user", "items", "scores"}, ...]}``;
* ``GET /health``.

Every error is a JSON body ``{"detail": "<what is wrong>"}``: 422 for an unknown item, a ``k``
out of range or a body that does not parse, 409 when concurrent writers kept a user busy, 503
when the store is unreachable. Handlers are plain functions: FastAPI runs them in its thread
pool, so requests proceed concurrently and the store's compare-and-set orders them.
"""
from __future__ import annotations

from typing import List, Union

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictInt, StrictStr

from .recommender import ConflictError, Recommender, UnknownItemError
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


def create_app(recommender: Recommender) -> FastAPI:
    app = FastAPI(title="recbole-lru serving",
                  description=f"{recommender.bundle.model_name} over {recommender.n_items - 1} items; "
                              f"one state per user, one step per interaction.")
    rec = recommender

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

    @app.get("/health")
    def health():
        return {"status": "ok", "model": rec.bundle.model_name, "n_items": rec.n_items - 1,
                "store": type(rec.store).__name__}

    @app.post("/users/{user}/interactions")
    def post_interactions(user: str, body: Interactions):
        version = rec.observe_many(user, [str(i) for i in body.items])
        return {"user": user, "version": version, "applied": len(body.items)}

    @app.get("/users/{user}/recommendations")
    def get_recommendations(user: str, k: int = Query(10), exclude_seen: bool = Query(True)):
        r = rec.recommend(user, k=k, exclude_seen=exclude_seen)
        return {"items": r.items, "scores": r.scores}

    @app.get("/users/{user}")
    def get_user(user: str):
        version, items = rec.history(user)
        return {"user": user, "version": version, "items": items}

    @app.post("/batch/interactions")
    def post_batch_interactions(body: BatchInteractions):
        versions = rec.observe_batch([(str(e.user), str(e.item)) for e in body.events])
        return {"versions": versions}

    @app.post("/batch/recommendations")
    def post_batch_recommendations(body: BatchRecommendations):
        users = [str(u) for u in body.users]
        results = rec.recommend_batch(users, k=body.k, exclude_seen=body.exclude_seen)
        return {"results": [{"user": u, "items": r.items, "scores": r.scores} for u, r in zip(users, results)]}

    return app
