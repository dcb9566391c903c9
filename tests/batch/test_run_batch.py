"""Run jobs on the responses protocol in batch mode, and the kinds batch mode refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.batch.conftest import BATCH_API, FAST_PHASES, input_lines
from tests.conftest import StartEmulator, read_output, run_cli, schema_validator
from tests.kinds.test_run import make, questions


def test_a_run_job_on_responses_gives_the_sync_columns(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    server = emulator(batch_phase_s=FAST_PHASES, run_duration_s=0.0)
    columns = {}
    for mode in ("sync", "batch"):
        folder = tmp_path / mode
        folder.mkdir()
        api = {**BATCH_API, "mode": mode}
        job = make(folder, questions(12), protocol="responses", api=api)
        result = run_cli("run", job, "--base-url", server.base_url, "--quiet")
        assert result.exit_code == 0, result.output
        results = read_output(job, "results")
        assert sorted(results["id"].to_list()) == [f"q{i:03d}" for i in range(12)]
        assert results["output_text"].str.len_chars().min() > 0  # type: ignore[operator]
        assert results["status"].unique().to_list() == ["completed"]
        columns[mode] = results.schema
    assert columns["sync"] == columns["batch"]
    routes = server.stats()["routes"]
    assert routes["POST /v1/responses"] == 12  # the sync job's only
    lines = input_lines(server.base_url, tmp_path / "batch" / "out")
    assert len(lines) == 12
    validator = schema_validator("CreateResponse")
    for line in lines:
        assert line["url"] == "/v1/responses"
        validator.validate(line["body"])


@pytest.mark.parametrize(
    ("sections", "named"),
    [
        ({"kind": "run", "protocol": "assistants"}, "run jobs on the assistants protocol"),
        ({"kind": "speech"}, "speech jobs"),
    ],
)
def test_batch_mode_refuses_what_the_batch_api_does_not_take(
    tmp_path: Path, sections: dict[str, str], named: str
) -> None:
    if sections["kind"] == "run":
        job = make(tmp_path, questions(2), protocol=sections["protocol"], api=BATCH_API)
    else:
        import polars as pl

        from tests.conftest import write_job

        data = pl.DataFrame({"id": [1], "text": ["hello"]})
        job = write_job(
            tmp_path,
            data,
            kind="speech",
            request={"model": "tts-1", "voice": "alloy", "input": "{text}"},
            api=BATCH_API,
        )
    for command in (("run", job, "--base-url", "http://127.0.0.1:9", "--quiet"), ("validate", job)):
        result = run_cli(*command)
        assert result.exit_code == 2, result.output
        assert named in result.output
        assert "moderation jobs, and run jobs on the responses protocol" in result.output
