"""What a job would send, without sending: every row built and checked, counts and an example."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pipeline import readers
from pipeline.cost import CostTally
from pipeline.errors import RowError
from pipeline.feed import READ_BATCH_ROWS
from pipeline.limits import OVER_TOKEN_LIMIT
from pipeline.plan import Plan

EXAMPLES = 5
SHOWN_CHARS = 200  # a longer string value in the example request is shortened inside it


@dataclass
class Preview:
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    tokens: int = 0
    characters: int = 0
    requests: int = 0
    first_payload: Any = None
    problems: list[tuple[Any, str]] = field(default_factory=list)  # (key, message), the first few
    reasons: Counter[str] = field(default_factory=Counter)
    cost: CostTally = field(default_factory=CostTally)  # the valid rows' estimates, per model


def preview(plan: Plan) -> Preview:
    """Build every row's request; count what would be sent and what would become an error row."""
    job, kind = plan.job, plan.kind
    key = job.input.key
    columns = list(dict.fromkeys([key, *job.input.keep, *sorted(kind.columns)]))
    result = Preview()
    for batch in readers.iter_batches(plan.input.files, columns, READ_BATCH_ROWS):
        for values in batch.iter_rows(named=True):
            result.rows += 1
            try:
                item = kind.build(values[key], values)
            except RowError as error:
                result.invalid += 1
                result.reasons[error.message.split(",")[0]] += 1
                if len(result.problems) < EXAMPLES:
                    result.problems.append((values[key], error.message))
                continue
            tpm = job.api.tokens_per_minute
            if tpm is not None and item.tokens > tpm:  # what the rate limiter will refuse
                result.invalid += 1
                message = f"about {item.tokens:,} tokens, over tokens_per_minute = {tpm:,}"
                result.reasons[OVER_TOKEN_LIMIT] += 1
                if len(result.problems) < EXAMPLES:
                    result.problems.append((values[key], f"{OVER_TOKEN_LIMIT}: {message}"))
                continue
            result.valid += 1
            result.tokens += item.tokens
            result.characters += item.characters
            result.requests += item.requests
            result.cost.add_estimate(kind.model_of(item), item)
            if result.first_payload is None:
                result.first_payload = item.payload
    result.requests = math.ceil(result.requests / kind.rows_per_request)
    return result


def shortened(value: Any, limit: int = SHOWN_CHARS) -> Any:
    """``value`` with every string longer than ``limit`` cut and told how much is left, so the
    example request prints whole, as valid JSON, however long its texts."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}…({len(value) - limit:,} more characters)"
    if isinstance(value, dict):
        return {key: shortened(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [shortened(item, limit) for item in value]
    return value
