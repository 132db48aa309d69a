"""Answers of schemas that FastAPI sends as they are.

A `def` route that returns a model has FastAPI validate it again against `response_model`, and for a
plain `def` route it does that on the thread pool: a second hop per request, after the route's own
(issue 15's profile). The busiest reads build their schema (which validates it) and return it as JSON
bytes instead; `response_model` still documents the answer in OpenAPI.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fastapi import Response
from pydantic import BaseModel, TypeAdapter


def model_json(model: BaseModel, *, status_code: int = 200) -> Response:
    """The model as the JSON FastAPI would send for it (by alias, nothing excluded)."""
    return Response(
        model.model_dump_json(by_alias=True), status_code=status_code, media_type="application/json"
    )


@lru_cache(maxsize=16)
def _list_adapter(item: type[BaseModel]) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[item])  # type: ignore[valid-type]


def models_json(items: list[Any], item: type[BaseModel], *, status_code: int = 200) -> Response:
    """A list of `item` models as the JSON FastAPI would send for `list[item]`."""
    body = _list_adapter(item).dump_json(items, by_alias=True)
    return Response(body, status_code=status_code, media_type="application/json")
