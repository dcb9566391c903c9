"""Moderation jobs end to end over real HTTP against the emulator; assertions on output data."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import pytest

from pipeline.kinds.moderation import CATEGORIES, column_name
from tests.conftest import (
    PolarsType,
    StartEmulator,
    read_output,
    run_cli,
    schema_validator,
    write_job,
)

TEXTS = [
    "have a lovely day",
    "I will kill you, you idiot",
    "",
    "   ",
    "la vie est belle",
    "you are a stupid moron",
    "thanks for the help!",
    "BOOM",
    "see you soon",
    "great post",
]


def frame(n: int, texts: Sequence[str | None] | None = None) -> pl.DataFrame:
    texts = texts or TEXTS
    return pl.DataFrame(
        {
            "id": [f"k{i:05d}" for i in range(n)],
            "author": [f"user{i % 7}" for i in range(n)],
            "text": [texts[i % len(texts)] for i in range(n)],
        }
    )


def assert_conserved(
    job: Path, keys: Sequence[str] | Sequence[int]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    results, errors = read_output(job, "results"), read_output(job, "errors")
    got = results["id"].to_list() + errors["id"].to_list()
    assert sorted(got) == sorted(keys), "every key exactly once in results or errors"
    return results, errors


@pytest.mark.parametrize("rows_per_request", [1, 4])
def test_results_and_errors_hold_every_key_once(
    tmp_path: Path, emulator: StartEmulator, rows_per_request: int
) -> None:
    server = emulator()
    data = frame(40)
    job = write_job(
        tmp_path,
        data,
        input={"keep": ["author"]},
        moderation={"rows_per_request": rows_per_request},
    )
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 1, result.output  # the empty and blank rows fail
    results, errors = assert_conserved(job, data["id"].to_list())
    assert len(errors) == 8
    assert set(errors["message"]) == {"input is empty", "input is only whitespace"}
    assert set(errors["stage"]) == {"build"}
    expected = ["id", "author", "flagged"]
    expected += [f"flag_{column_name(c)}" for c in CATEGORIES]
    expected += [f"score_{column_name(c)}" for c in CATEGORIES] + ["model"]
    assert results.columns == expected
    by_text = dict(zip(data["id"], data["text"], strict=True))
    flagged = {by_text[k] for k in results.filter(pl.col("flagged"))["id"]}
    assert "I will kill you, you idiot" in flagged
    assert "have a lovely day" not in flagged
    assert (
        results["author"].to_list()
        == data.filter(pl.col("id").is_in(results["id"].to_list()))["author"].to_list()
    )
    assert set(results["model"]) == {"local/alt-profanity-check"}
    sent = [body for path, body in server.recorded_requests() if path.endswith("/moderations")]
    for body in sent:
        schema_validator("CreateModerationRequest").validate(body)
    inputs = [body["input"] for body in sent]
    if rows_per_request == 1:
        assert all(isinstance(one, str) for one in inputs)
        assert len(sent) == 32
    else:
        assert all(isinstance(one, list) and 1 <= len(one) <= 4 for one in inputs)
        assert sum(len(one) for one in inputs) == 32


def test_multimodal_rows_send_text_and_image_parts(tmp_path: Path, emulator: StartEmulator) -> None:
    server = emulator()
    data = pl.DataFrame(
        {
            "id": [1, 2, 3],
            "text": ["nice cat", "I will hurt you", None],
            "image": [
                "https://example.com/a.png",
                "data:image/png;base64,AAAA",
                "https://example.com/c.png",
            ],
        }
    )
    job = write_job(
        tmp_path,
        data,
        request={
            "input": [
                {"type": "text", "text": "{text}"},
                {"type": "image_url", "image_url": {"url": "{image}"}},
            ]
        },
    )
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 1, result.output
    results, errors = read_output(job, "results"), read_output(job, "errors")
    assert sorted(results["id"]) == [1, 2]
    assert errors["id"].to_list() == [3]
    assert "column 'text' is empty (null)" in errors["message"][0]
    sent = [body for _, body in server.recorded_requests()]
    assert len(sent) == 2
    for body in sent:
        schema_validator("CreateModerationRequest").validate(body)
        assert [part["type"] for part in body["input"]] == ["text", "image_url"]


def test_packed_request_rejected_by_server_is_split_to_the_bad_row(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(reject_substring="FORBIDDEN")
    texts = [f"ordinary comment {i}" for i in range(16)]
    texts[5] = "this one is FORBIDDEN by the server"
    data = frame(16, texts)
    job = write_job(tmp_path, data, moderation={"rows_per_request": 8})
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 1
    results, errors = assert_conserved(job, data["id"].to_list())
    assert errors["id"].to_list() == ["k00005"]
    assert errors["http_status"].to_list() == [400]
    assert len(results) == 15


@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        ([5, None, 7], pl.Int64),
        ([2.5, float("nan"), float("inf")], pl.Float64),
        ([True, False, True], pl.Boolean),
        ([["a"], ["b"], ["c"]], pl.List(pl.String)),
    ],
)
def test_numbers_are_sent_as_text_and_other_non_text_values_are_error_rows(
    tmp_path: Path, emulator: StartEmulator, values: list[Any], dtype: PolarsType
) -> None:
    server = emulator()
    data = pl.DataFrame({"id": [1, 2, 3], "text": values}, schema={"id": pl.Int64, "text": dtype})
    job = write_job(tmp_path, data)
    result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
    assert result.exit_code == 1
    results, errors = assert_conserved(job, [1, 2, 3])
    texts_by_dtype: dict[object, dict[int, str]] = {
        pl.Int64: {1: "5", 3: "7"},  # a number is its text, as a CSV cell "5" is
        pl.Float64: {1: "2.5"},  # NaN and inf are not numbers a text can say
    }
    texts = texts_by_dtype.get(dtype, {})
    assert sorted(results["id"]) == sorted(texts)
    assert sorted(body["input"] for _, body in server.recorded_requests()) == sorted(texts.values())
    assert len(errors) == 3 - len(texts)
    message = errors["message"][0]
    if dtype == pl.Boolean:
        assert "input must be text, got bool True" in message
    elif dtype == pl.Float64:
        assert "(not a number), needed for input" in message


@pytest.mark.parametrize("input_name", ["input.jsonl", "input.csv"])
def test_a_number_is_text_whatever_the_input_format(
    tmp_path: Path, emulator: StartEmulator, input_name: str
) -> None:
    server = emulator()
    # one number among strings, and a column of numbers only, in JSONL and CSV alike
    data = pl.DataFrame({"id": [1, 2], "text": [5, 6]})
    job = write_job(tmp_path, data, input_name=input_name)
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "input.jsonl").write_text('{"id": 1, "text": "hello"}\n{"id": 2, "text": 5}\n')
    mixed_job = write_job(mixed, input_name="input.jsonl")
    assert run_cli("run", mixed_job, "--base-url", server.base_url, "--quiet").exit_code == 0
    sent = [body["input"] for _, body in server.recorded_requests()]
    assert sorted(sent) == ["5", "5", "6", "hello"]


def test_a_null_in_a_whole_body_template_names_the_field(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    data = pl.DataFrame({"id": [1, 2], "text": ["fine", None]})
    job = write_job(tmp_path, data)
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 1
    (message,) = read_output(job, "errors")["message"].to_list()
    assert message == "column 'text' is empty (null), needed for input"


def test_second_run_sends_nothing_and_limit_takes_new_rows_only(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator()
    data = frame(30, [f"comment number {i}" for i in range(30)])
    job = write_job(tmp_path, data)
    assert (
        run_cli("run", job, "--base-url", server.base_url, "--quiet", "--limit", "10").exit_code
        == 4  # rows left unread: resumable
    )
    assert len(read_output(job, "results")) == 10
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    assert run_cli("run", job, "--base-url", server.base_url, "--quiet").exit_code == 0
    results = read_output(job, "results")
    assert sorted(results["id"]) == data["id"].to_list()
    sent = [body["input"] for _, body in server.recorded_requests()]
    assert sorted(sent) == sorted(data["text"].to_list()), "no row sent twice"


class _LyingModerations(BaseHTTPRequestHandler):
    """A server that answers 200 with results that are not what the API promises."""

    lies: ClassVar[dict[str, Any]] = {
        "flag-as-text": {"flagged": "false", "categories": {}, "category_scores": {}},
        "score-as-text": {"flagged": False, "categories": {}, "category_scores": {"hate": "x"}},
        "score-nan": {"flagged": False, "categories": {}, "category_scores": {"hate": "NaN"}},
        "categories-list": {"flagged": False, "categories": [], "category_scores": {}},
        "honest": {
            "flagged": True,
            "categories": {"hate": True},
            "category_scores": {"hate": 0.9},
        },
        # finite, though their sum is not: once an internal_error (math.fsum overflowed)
        "huge-scores": {
            "flagged": False,
            "categories": {},
            "category_scores": {"hate": 1e308, "harassment": 1e308},
        },
    }

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        result = self.lies[body["input"]]
        data = json.dumps({"id": "modr-1", "model": "liar", "results": [result]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_answers_that_break_the_contract_are_bad_response_rows_not_guesses(tmp_path: Path) -> None:
    """ "false" as a string must not become flagged = True; a score that is not a number is
    not a crash (internal_error) but an error row saying what the answer held."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LyingModerations)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        names = list(_LyingModerations.lies)
        job = write_job(tmp_path, pl.DataFrame({"id": names, "text": names}))
        base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        assert run_cli("run", job, "--base-url", base_url, "--quiet").exit_code == 1
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
    errors = {r["id"]: r for r in read_output(job, "errors").iter_rows(named=True)}
    assert set(errors) == set(names) - {"honest", "huge-scores"}
    assert {r["error_type"] for r in errors.values()} == {"bad_response"}
    assert "flagged is 'false', not a boolean" in errors["flag-as-text"]["message"]
    assert "score_hate is 'x', not a finite number" in errors["score-as-text"]["message"]
    results = read_output(job, "results")
    assert sorted(results.select("id", "flagged", "score_hate").rows()) == [
        ("honest", True, 0.9),
        ("huge-scores", False, 1e308),
    ]
