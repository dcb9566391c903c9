"""pipeline report: the report of each sample job (run on the embedded emulator, --limit to keep
it short) opened in headless Chromium from a file:// URL with the network off renders every
chart, and what the charts and figures show equals the output files."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest
from selenium import webdriver

from pipeline.stats import RunStats
from pipeline.timeline import Timeline, read_timeline
from tests.browser import Page, chromium, open_report
from tests.conftest import REPO, StartEmulator, run_cli, write_job

LIMITS = {  # sample job: --limit
    "moderate_comments": 64,
    "narrate_corpus": 2,  # the third paragraph is 10 minutes of audio
    "narrate_self_hosted": 2,
    "answer_questions": 8,
}
HALF_A_DIGIT = 5.001e-4  # charts show 0.1% and 0.001 h: a value may be off by half of that
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//)""", re.IGNORECASE)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each sample job run once with --limit and --report; moderation's report made again with
    --by author."""
    made = {}
    for job, limit in LIMITS.items():
        out = tmp_path_factory.mktemp(job) / "out"
        ran = run_cli(
            "run", REPO / "jobs" / f"{job}.toml", "--output", out, "--limit", str(limit), "--report"
        )
        assert ran.exit_code == 4, ran.output  # --limit left input rows unread
        assert f"report:  {out / 'report.html'}" in ran.output
        made[job] = out
    by = run_cli("report", made["moderate_comments"], "--by", "author")
    assert by.exit_code == 0, by.output
    return made


def _number(text: str) -> float:
    text = text.strip().replace(",", "")
    return float(text[:-1]) / 100 if text.endswith("%") else float(text)


def _check_moderation(page: Page, results: pl.DataFrame) -> None:
    bars = {mark["category"]: _number(mark["flagged_rate"]) for mark in page.marks["flagged_rate"]}
    categories = [c.removeprefix("flag_") for c in results.columns if c.startswith("flag_")]
    assert sorted(bars) == sorted(categories) and len(categories) == 13
    for category in categories:
        assert bars[category] == pytest.approx(results[f"flag_{category}"].mean(), abs=HALF_A_DIGIT)
    assert len(page.marks["score_histograms"]) >= len(categories)  # a bar or more per category
    by_author = results.group_by("author").agg(pl.col("flagged").mean(), pl.len())
    shown = {
        mark["author"]: _number(mark["flagged_rate"]) for mark in page.marks["flagged_rate_by"]
    }
    assert shown and len(shown) == min(30, by_author.height)
    for author, rate in shown.items():
        assert rate == pytest.approx(
            by_author.filter(pl.col("author") == author)["flagged"][0], abs=5e-4
        )
    scores = results.filter(pl.col("flagged")).select(
        "comment_id", pl.max_horizontal(pl.col("^score_.*$")).alias("top")
    )
    first = scores.sort("top", descending=True)["comment_id"][0]
    table = page.dom[page.dom.index('data-table="most_flagged"') :]
    assert table.index(f"<td>{first}</td>") < table.index("</tr>", table.index("<tbody>"))


def _check_speech(page: Page, results: pl.DataFrame) -> None:
    hours = results.group_by("voice", "format").agg(pl.col("duration_s").sum() / 3600)
    shown = {
        (m["voice"], m["format"]): _number(m["audio_hours"]) for m in page.marks["audio_hours"]
    }
    assert len(shown) == hours.height > 0
    for voice, fmt, value in hours.iter_rows():
        assert shown[(voice, fmt)] == pytest.approx(value, abs=HALF_A_DIGIT)
    points = {
        (int(_number(m["characters"])), _number(m["audio seconds"]))
        for m in page.marks["duration_vs_chars"]
    }
    expected = {
        (chars, round(seconds, 3))
        for chars, seconds in results.select("chars", "duration_s").iter_rows()
    }
    assert {(c, round(s, 3)) for c, s in points} == expected


def _check_run(page: Page, results: pl.DataFrame) -> None:
    statuses = dict(results.group_by("status").len().iter_rows())
    shown = {mark["status"]: int(_number(mark["rows"])) for mark in page.marks["run_status"]}
    assert shown == statuses and sum(shown.values()) == results.height
    tokens = page.marks["tokens_per_row"]
    assert sum(int(_number(mark["rows"])) for mark in tokens) == results["total_tokens"].count()


CHECKS: dict[str, Callable[[Page, pl.DataFrame], None]] = {
    "moderation": _check_moderation,
    "speech": _check_speech,
    "run": _check_run,
}


@pytest.mark.parametrize("job", sorted(LIMITS))
def test_the_report_of_each_sample_job_renders_offline_and_shows_the_outputs_numbers(
    job: str, folders: dict[str, Path], browser: webdriver.Chrome
) -> None:
    out = folders[job]
    html = (out / "report.html").read_text(encoding="utf-8")
    assert EXTERNAL.search(html) is None  # nothing to fetch: scripts and styles are inline
    page = open_report(browser, out / "report.html")
    assert page.resources == []  # the page asked the network for nothing
    assert page.charts_rendered == len(page.chart_pixels) >= 6
    for name, (width, height, inked) in page.chart_pixels.items():
        assert width > 200 and height > 50 and inked > width * height // 100, name
    assert page.dom.count("<svg") >= page.charts_rendered
    summary = json.loads((out / "summary.json").read_text())
    results = pl.read_parquet(out / "results.parquet")
    errors = pl.read_parquet(out / "errors.parquet")
    assert int(_number(page.figure("rows_done"))) == results.height > 0
    assert int(_number(page.figure("rows_failed"))) == errors.height
    assert int(_number(page.figure("requests"))) == summary["requests"]["sent"]
    assert page.figure("outcome") == summary["outcome"] == "interrupted"
    cost = summary["cost_usd"]["actual"]
    if cost is None:  # a model without a price (the emulator's local responder)
        assert page.figure("cost_usd") == "-" and summary["cost_usd"]["no_price_for"]
    else:
        assert _number(page.figure("cost_usd")) == pytest.approx(cost)
    timeline = page.marks["requests_per_s"]
    assert timeline and all(_number(mark["requests/s"]) >= 0 for mark in timeline)
    answered = sum(int(_number(mark["requests"])) for mark in page.marks["latency_distribution"])
    assert answered == summary["requests"]["sent"]
    if errors.height:
        shown = {m["error_type"]: int(_number(m["rows"])) for m in page.marks["errors_by_type"]}
        assert shown == dict(errors.group_by("error_type").len().iter_rows())
    CHECKS[summary["kind"]](page, results)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_csv_or_jsonl_output_is_reported_from_its_file(
    tmp_path: Path, emulator: StartEmulator, fmt: str
) -> None:
    server = emulator()
    data = pl.DataFrame(
        {"id": [f"r{i}" for i in range(12)], "text": ["you idiot", "hello", "=1+1", ""] * 3}
    )
    job = write_job(
        tmp_path,
        data,
        input={"keep": ["text"]},
        output={"format": fmt},
        api={"base_url": server.base_url},
    )
    assert run_cli("run", job, "--quiet").exit_code == 1  # the empty texts are error rows
    made = run_cli("report", tmp_path / "out")
    assert made.exit_code == 0, made.output
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert 'data-metric="rows_done">9<' in html and 'data-metric="rows_failed">3<' in html
    specs = json.loads(html[html.index("const specs = ") + 14 : html.index(";\nconst options")])
    rates = {
        v["category"]: v["flagged_rate"]
        for v in next(iter(specs["flagged_rate"]["datasets"].values()))
    }
    assert rates["harassment"] == pytest.approx(3 / 9, abs=1e-4)  # "you idiot", 3 of 9 done rows


def test_report_of_a_folder_without_a_run_or_with_a_bad_by_is_exit_2(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    empty = run_cli("report", tmp_path)
    assert empty.exit_code == 2 and "summary.json" in empty.output
    server = emulator()
    job = write_job(
        tmp_path, pl.DataFrame({"id": ["a"], "text": ["hi"]}), api={"base_url": server.base_url}
    )
    assert run_cli("run", job, "--quiet").exit_code == 0
    bad = run_cli("report", tmp_path / "out", "--by", "author")
    assert bad.exit_code == 2 and "--by author" in bad.output
    assert not (tmp_path / "out" / "report.html").exists()


def test_a_long_run_keeps_a_bounded_timeline_that_adds_up(tmp_path: Path) -> None:
    """Past the cap, neighbouring samples merge: the file stays small, no count is lost."""
    stats = RunStats()
    timeline = Timeline(tmp_path, stats, max_samples=8)
    for second in range(1, 101):
        stats.requests += 3
        stats.rate_limited += second % 2
        stats.latency.add(0.03)
        timeline.sample(float(second))
    header, samples = read_timeline(tmp_path)
    assert header["latency_edges_ms"][0] == 5
    assert 4 <= len(samples) < 8
    assert (
        sum(s["requests"] for s in samples) == 300 and sum(s["rate_limited"] for s in samples) == 50
    )
    assert sum(sum(s["latency"]) for s in samples) == 100
    assert sum(s["s"] for s in samples) == pytest.approx(100.0) and samples[-1]["t"] == 100.0
