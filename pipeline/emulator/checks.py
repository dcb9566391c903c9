"""Hand-written request-body checks with OpenAI's error bodies (jsonschema is not a runtime need).

A check is ``check(value, path)``: it returns nothing and raises ApiReply (400,
``invalid_request_error``) naming the field in ``param`` as a path (``tools[0].function.name``),
with the API's wording and codes (``invalid_type``, ``invalid_value``, ``decimal_above_max_value``
...). Checks are built from small combinators, so a request schema reads like its JSON Schema;
``body`` checks a top-level body: unknown fields first, then required ones, then each field.
Limits that the spec states only in prose are checked too: ``metadata`` (16 pairs, keys <= 64
characters, values <= 512) and function names (``[a-zA-Z0-9_-]{1,64}``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

from pipeline.emulator.replies import ApiReply, invalid_request, json_type

Check = Callable[[Any, str], None]

NOTE: Final[str] = "(local emulator)"
METADATA_PAIRS: Final[int] = 16
METADATA_KEY_CHARS: Final[int] = 64
METADATA_VALUE_CHARS: Final[int] = 512
NAME_PATTERN: Final[str] = "^[a-zA-Z0-9_-]{1,64}$"


def fail(path: str | None, message: str, code: str | None = None) -> ApiReply:
    """A 400 naming ``path`` (None: no one field), ready to raise."""
    return invalid_request(f"{message} {NOTE}", param=path, code=code)


def wrong_type(path: str, expected: str, value: Any) -> ApiReply:
    return fail(
        path,
        f"Invalid type for '{path}': expected {expected}, but got {json_type(value)} instead.",
        "invalid_type",
    )


def body(value: dict[str, Any], fields: Mapping[str, Check], required: Collection[str]) -> None:
    """Check a request body: no unknown fields, the required ones present, each field valid."""
    known(value, fields)
    _fields(value, fields, required, "")


def known(value: dict[str, Any], names: Collection[str]) -> None:
    """400 naming the first field of a request body that is not one of ``names``."""
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise fail(
            unknown[0], f"Unrecognized request argument supplied: {', '.join(unknown)}", None
        )


def present(value: dict[str, Any], names: Collection[str], at: str = "") -> None:
    """400 naming the first of ``names`` that ``value`` lacks (``at``: its path, ``"x."``)."""
    for name in names:
        if name not in value:
            raise fail(at + name, f"Missing required parameter: '{at + name}'.", None)


def _fields(
    value: dict[str, Any], fields: Mapping[str, Check], required: Collection[str], at: str
) -> None:
    present(value, required, at)
    for name, check in fields.items():
        if name in value:
            check(value[name], at + name)


def string(*, max_length: int | None = None, pattern: str | None = None) -> Check:
    matcher = re.compile(pattern) if pattern else None

    def check(value: Any, path: str) -> None:
        if not isinstance(value, str):
            raise wrong_type(path, "a string", value)
        if max_length is not None and len(value) > max_length:
            raise fail(
                path,
                f"Invalid '{path}': string too long. Expected a string with maximum length "
                f"{max_length}, but got a string with length {len(value)} instead.",
                "string_above_max_length",
            )
        if matcher is not None and not matcher.match(value):
            raise fail(
                path,
                f"Invalid '{path}': string does not match pattern. Expected a string that "
                f"matches the pattern '{pattern}'.",
                "invalid_value",
            )

    return check


def boolean(value: Any, path: str) -> None:
    if not isinstance(value, bool):
        raise wrong_type(path, "a boolean", value)


def anything(value: Any, path: str) -> None:
    """Accepted as sent (a field the emulator does not look into)."""


def number(
    *, minimum: float | None = None, maximum: float | None = None, integer: bool = False
) -> Check:
    kind = "integer" if integer else "decimal"

    def check(value: Any, path: str) -> None:
        numeric = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, numeric):
            raise wrong_type(path, f"an {kind}" if integer else "a decimal", value)
        for limit, above in ((minimum, False), (maximum, True)):
            if limit is not None and (value > limit if above else value < limit):
                side, sign = ("above maximum", "<=") if above else ("below minimum", ">=")
                raise fail(
                    path,
                    f"Invalid '{path}': {kind} {side} value. Expected a value {sign} "
                    f"{limit:g}, but got {value} instead.",
                    f"{kind}_{side.replace(' ', '_')}_value",
                )

    return check


def choice(*allowed: str) -> Check:
    def check(value: Any, path: str) -> None:
        if not isinstance(value, str):
            raise wrong_type(path, "a string", value)
        if value not in allowed:
            listed = ", ".join(f"'{option}'" for option in allowed)
            raise fail(
                path,
                f"Invalid value: '{value}'. Supported values are: {listed}.",
                "invalid_value",
            )

    return check


def nullable(inner: Check) -> Check:
    def check(value: Any, path: str) -> None:
        if value is not None:
            inner(value, path)

    return check


def array(item: Check, *, min_items: int = 0, max_items: int | None = None) -> Check:
    def check(value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise wrong_type(path, "an array", value)
        if len(value) < min_items:
            raise fail(
                path,
                f"Invalid '{path}': empty array. Expected an array with minimum length "
                f"{min_items}, but got an array with length {len(value)} instead.",
                "empty_array" if not value else "array_below_min_length",
            )
        if max_items is not None and len(value) > max_items:
            raise fail(
                path,
                f"Invalid '{path}': array too long. Expected an array with maximum length "
                f"{max_items}, but got an array with length {len(value)} instead.",
                "array_above_max_length",
            )
        for index, element in enumerate(value):
            item(element, f"{path}[{index}]")

    return check


def obj(
    fields: Mapping[str, Check], *, required: Collection[str] = (), closed: bool = False
) -> Check:
    """An object; ``closed`` refuses fields that are not listed (additionalProperties false)."""

    def check(value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise wrong_type(path, "an object", value)
        if closed:
            unknown = sorted(set(value) - set(fields))
            if unknown:
                raise fail(
                    f"{path}.{unknown[0]}",
                    f"Unknown parameter: '{path}.{unknown[0]}'.",
                    "unknown_parameter",
                )
        _fields(value, fields, required, f"{path}.")

    return check


def tagged(variants: Mapping[str, Check], *, tag: str = "type") -> Check:
    """An object whose ``tag`` field picks the check (a oneOf with a discriminator)."""
    allowed = choice(*variants)

    def check(value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise wrong_type(path, "an object", value)
        if tag not in value:
            raise fail(f"{path}.{tag}", f"Missing required parameter: '{path}.{tag}'.", None)
        allowed(value[tag], f"{path}.{tag}")
        variants[value[tag]](value, path)

    return check


def by_type(expected: str, **checks: Check) -> Check:
    """One check per JSON type (``string``, ``array``, ``object``); anything else is refused."""
    types: dict[str, type] = {"string": str, "array": list, "object": dict}

    def check(value: Any, path: str) -> None:
        for name, inner in checks.items():
            if isinstance(value, types[name]):
                inner(value, path)
                return
        raise wrong_type(path, expected, value)

    return check


def metadata(value: Any, path: str) -> None:
    """Metadata: null, or at most 16 string pairs; keys <= 64 characters, values <= 512."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise wrong_type(path, "an object", value)
    if len(value) > METADATA_PAIRS:
        raise fail(
            path,
            f"Invalid '{path}': too many properties. Expected an object with at most "
            f"{METADATA_PAIRS} properties, but got an object with {len(value)} properties "
            "instead.",
            "object_above_max_properties",
        )
    for key, item in value.items():
        if len(key) > METADATA_KEY_CHARS:
            raise fail(
                path,
                f"Invalid '{path}': key '{key[:20]}...' is too long. Expected keys with maximum "
                f"length {METADATA_KEY_CHARS}, but got a key with length {len(key)} instead.",
                "string_above_max_length",
            )
        string(max_length=METADATA_VALUE_CHARS)(item, f"{path}.{key}")


TEMPERATURE: Final[Check] = nullable(number(minimum=0, maximum=2))
TOP_P: Final[Check] = nullable(number(minimum=0, maximum=1))
FUNCTION_NAME: Final[Check] = string(pattern=NAME_PATTERN)
OPTIONAL_STRING: Final[Check] = nullable(string())
OPTIONAL_BOOLEAN: Final[Check] = nullable(boolean)
