"""The wire format every route shares: OpenAI error bodies, JSON answers, ids, request bodies."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web


class ApiReply(Exception):
    """An error answer, raised anywhere inside a route and sent by the app's middleware."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})


def error_body(
    message: str, error_type: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error body (schema ErrorResponse)."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> ApiReply:
    """A 400 ``invalid_request_error``, ready to raise."""
    return ApiReply(400, error_body(message, "invalid_request_error", param=param, code=code))


def json_response(
    body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON answer encoded with orjson."""
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def new_id(prefix: str) -> str:
    """A fresh OpenAI-looking identifier such as ``modr-5f0c...``."""
    return f"{prefix}-{os.urandom(12).hex()}"


async def read_json(request: web.Request) -> Any:
    """The request body parsed as JSON (aiohttp keeps the bytes, so a second read is cheap).

    Raises ApiReply (400) when the body is not valid JSON.
    """
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise invalid_request(
            "We could not parse the JSON body of your request. The API expects a JSON payload, "
            "but what was sent was not valid JSON. (local emulator)"
        ) from None


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body, which must be a JSON object; raises ApiReply (400) otherwise."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise invalid_request(
            f"The request body must be a JSON object, not {json_type(body)}. (local emulator)"
        )
    return body


def json_type(value: Any) -> str:
    """How JSON would name the type of ``value``, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
