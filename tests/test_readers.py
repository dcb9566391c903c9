from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import JobError
from pipeline.readers import InputInfo, find_files, inspect, iter_batches, parsing


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def write_jsonl(path: Path, rows: Sequence[Mapping[str, object]]) -> Path:
    return write(path, b"".join(orjson.dumps(row) + b"\n" for row in rows))


def read_all(files: tuple[Path, ...], columns: list[str], batch_size: int = 10_000) -> pl.DataFrame:
    batches = list(iter_batches(files, columns, batch_size))
    return pl.concat(batches) if batches else pl.DataFrame()


def job_error(call: object, *args: object) -> JobError:
    assert callable(call)
    with pytest.raises(JobError) as caught:
        result = call(*args)
        if not isinstance(result, InputInfo | tuple):
            list(result)  # a generator raises on first use
    return caught.value


# --- round trips ------------------------------------------------------------------------------


def test_csv_round_trip_keeps_every_value_a_string(tmp_path: Path) -> None:
    path = write(
        tmp_path / "comments.csv",
        "comment_id,score,text\n00123,7,hello\n00124,1.50,\n",
    )
    files = find_files("comments.csv", tmp_path)
    info = inspect(files, "comment_id")
    assert info == InputInfo(
        files=(path,),
        schema={"comment_id": pl.String(), "score": pl.String(), "text": pl.String()},
        rows=2,
    )
    frame = read_all(files, ["text", "comment_id", "score"])
    assert frame.columns == ["text", "comment_id", "score"]
    assert frame.rows() == [("hello", "00123", "7"), (None, "00124", "1.50")]


def test_tsv_round_trip_with_quoted_tab(tmp_path: Path) -> None:
    write(tmp_path / "a.tsv", 'id\ttext\n1\t"tab\there"\n2\tplain, with comma\n')
    files = find_files("a.tsv", tmp_path)
    assert inspect(files, "id").rows == 2
    assert read_all(files, ["id", "text"]).rows() == [
        ("1", "tab\there"),
        ("2", "plain, with comma"),
    ]


def test_parquet_round_trip_keeps_types(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {"id": [3, 1, 2], "text": ["c", "a", None], "score": [0.5, 1.0, 2.5]},
        schema={"id": pl.Int64, "text": pl.String, "score": pl.Float32},
    )
    frame.write_parquet(tmp_path / "data.parquet")
    files = find_files("data.parquet", tmp_path)
    info = inspect(files, "id")
    assert info.schema == {"id": pl.Int64, "text": pl.String, "score": pl.Float32}
    assert info.rows == 3
    assert read_all(files, ["score", "id"]).equals(frame.select("score", "id"))


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson"])
def test_jsonl_round_trip_skips_blank_lines_and_bom(tmp_path: Path, suffix: str) -> None:
    write(
        tmp_path / f"rows{suffix}",
        b'\xef\xbb\xbf{"id": "a", "n": 1, "text": "x"}\r\n\n   \n'
        b'{"text": "y", "id": "b", "n": 2}\n{"id": "c", "n": null}',
    )
    files = find_files(f"rows{suffix}", tmp_path)
    info = inspect(files, "id")
    assert info.schema == {"id": pl.String, "n": pl.Int64, "text": pl.String}
    assert info.rows == 3
    assert read_all(files, ["id", "n", "text"]).rows() == [
        ("a", 1, "x"),
        ("b", 2, "y"),
        ("c", None, None),
    ]


def test_jsonl_across_many_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing, "_JSONL_BLOCK_BYTES", 50)  # lines straddle block edges
    rows = [{"id": f"k{i}", "text": "é" * (i % 7)} for i in range(40)]
    files = (write_jsonl(tmp_path / "rows.jsonl", rows),)
    assert inspect(files, "id").rows == 40
    frame = read_all(files, ["id", "text"], batch_size=6)
    assert frame.to_dicts() == rows


# --- CSV details ------------------------------------------------------------------------------


def test_csv_bom_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    files = (write(tmp_path / "bom.csv", b"\xef\xbb\xbfid,text\r\nx1,hi\r\n"),)
    info = inspect(files, "id")
    assert list(info.schema) == ["id", "text"]
    assert read_all(files, ["id", "text"]).rows() == [("x1", "hi")]


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    csv = write(tmp_path / "bad.csv", b"id,text\n1,caf\xe9 cr\xff\xfeme\n2,fine\n")
    jsonl = write(tmp_path / "bad.jsonl", b'{"id": "1", "text": "caf\xe9"}\n')
    assert read_all((csv,), ["text"]).get_column("text").to_list() == [
        "caf\ufffd cr\ufffd\ufffdme",
        "fine",
    ]
    assert inspect((jsonl,), "id").rows == 1
    assert read_all((jsonl,), ["text"]).item() == "caf\ufffd"


def test_csv_embedded_newlines_quotes_and_commas(tmp_path: Path) -> None:
    text = 'She said "stop", then left.\nSecond line, with commas, too.'
    quoted = text.replace('"', '""')
    files = (write(tmp_path / "q.csv", f'id,text\n1,"{quoted}"\n2,"""quoted"""\n'),)
    assert inspect(files, "id").rows == 2
    assert read_all(files, ["text"]).get_column("text").to_list() == [text, '"quoted"']


def test_csv_blank_lines_are_not_rows(tmp_path: Path) -> None:
    files = (write(tmp_path / "blank.csv", "id,text\n1,a\n\n2,b\n\n\n"),)
    assert inspect(files, "id").rows == 2
    assert read_all(files, ["id"]).get_column("id").to_list() == ["1", "2"]


def test_header_only_csv_is_an_empty_input(tmp_path: Path) -> None:
    files = (write(tmp_path / "h.csv", "comment_id,text\n"),)
    info = inspect(files, "comment_id")
    assert info.rows == 0
    assert info.schema == {"comment_id": pl.String, "text": pl.String}
    assert list(iter_batches(files, ["text"])) == []


# --- finding files ----------------------------------------------------------------------------


def test_glob_and_folder_are_sorted_and_folder_skips_non_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for name in ("b.csv", "a.csv", "c.jsonl"):
        write(data / name, "id\n1\n")
    write(data / "README.md", "notes")
    write(data / "_SUCCESS", "")
    write(data / ".hidden.csv", "id\n1\n")
    write(data / "nested" / "d.csv", "id\n1\n")
    assert find_files("data", tmp_path) == (data / "a.csv", data / "b.csv", data / "c.jsonl")
    assert find_files("data/*.csv", tmp_path) == (data / "a.csv", data / "b.csv")
    assert find_files("data/**/*.csv", tmp_path) == (
        data / "a.csv",
        data / "b.csv",
        data / "nested" / "d.csv",
    )
    assert find_files(str(data / "b.csv"), Path("/elsewhere")) == (data / "b.csv",)


def test_glob_under_a_folder_whose_name_looks_like_a_glob(tmp_path: Path) -> None:
    base = tmp_path / "jobs [2024]"
    write(base / "data" / "a.csv", "id\n1\n")
    assert find_files("data/*.csv", base) == (base / "data" / "a.csv",)


def test_glob_matching_nothing(tmp_path: Path) -> None:
    error = job_error(find_files, "x/*.csv", tmp_path)
    assert error.field == "input.path"
    assert "the glob 'x/*.csv' matches no file" in str(error)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("missing.csv", "does not exist"),
        ("notes.txt", "unsupported extension '.txt'"),
        ("mixed/*", "unsupported extension '.txt'"),
        ("empty_dir", "holds no data file"),
    ],
)
def test_find_files_errors(tmp_path: Path, path: str, expected: str) -> None:
    write(tmp_path / "notes.txt", "hi")
    write(tmp_path / "mixed" / "a.csv", "id\n1\n")
    write(tmp_path / "mixed" / "b.txt", "hi")
    (tmp_path / "empty_dir").mkdir()
    error = job_error(find_files, path, tmp_path)
    assert error.field == "input.path"
    assert expected in str(error)


# --- batches across files ---------------------------------------------------------------------


def test_batches_are_full_and_ordered_across_files_and_formats(tmp_path: Path) -> None:
    files = (
        write(tmp_path / "1.csv", "id,text\n" + "".join(f"a{i},t{i}\n" for i in range(5))),
        write_jsonl(tmp_path / "2.jsonl", [{"text": f"t{i}", "id": f"b{i}"} for i in range(7)]),
        write(tmp_path / "3.tsv", "text\tid\n" + "".join(f"t{i}\tc{i}\n" for i in range(3))),
    )
    assert inspect(files, "id").rows == 15
    batches = list(iter_batches(files, ["id", "text"], batch_size=4))
    assert [batch.height for batch in batches] == [4, 4, 4, 3]
    assert all(batch.columns == ["id", "text"] for batch in batches)
    ids = pl.concat(batches).get_column("id").to_list()
    assert ids == [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(7)] + ["c0", "c1", "c2"]


def test_parquet_row_groups_rebatched(tmp_path: Path) -> None:
    table = pa.table({"id": list(range(1000)), "text": [f"t{i}" for i in range(1000)]})
    pq.write_table(table, tmp_path / "rg.parquet", row_group_size=64)
    files = (tmp_path / "rg.parquet",)
    batches = list(iter_batches(files, ["id"], batch_size=300))
    assert [batch.height for batch in batches] == [300, 300, 300, 100]
    assert pl.concat(batches).get_column("id").to_list() == list(range(1000))


def test_iter_batches_rejects_unknown_column_and_bad_size(tmp_path: Path) -> None:
    files = (write(tmp_path / "a.csv", "id,text\n1,a\n"),)
    assert "did you mean 'text'" in str(job_error(iter_batches, files, ["id", "txt"]))
    with pytest.raises(ValueError):
        list(iter_batches(files, ["id"], batch_size=0))
    with pytest.raises(ValueError):
        list(iter_batches(files, []))
    assert read_all(files, ["id", "text", "id"]).columns == ["id", "text"]


def test_stopping_early_releases_the_file(tmp_path: Path) -> None:
    rows = "".join(f"{i},{'x' * 50}\n" for i in range(50_000))
    files = (write(tmp_path / "big.csv", "id,text\n" + rows),)
    batches = iter_batches(files, ["id"], batch_size=100)
    assert next(batches).get_column("id")[0] == "0"
    del batches  # closes the generator and the polars query under it
    assert sum(batch.height for batch in iter_batches(files, ["id"], 20_000)) == 50_000


# --- key checks -------------------------------------------------------------------------------


def test_key_missing_lists_columns(tmp_path: Path) -> None:
    files = (write(tmp_path / "a.csv", "comment_id,text\n1,a\n"),)
    error = job_error(inspect, files, "comment")
    assert error.field == "input.key"
    assert "no column 'comment'" in str(error)
    assert "comment_id, text" in str(error)


def test_key_nulls_say_how_many_and_where(tmp_path: Path) -> None:
    first = write(tmp_path / "1.csv", "id,text\n1,a\n2,b\n")
    second = write(tmp_path / "2.csv", "id,text\n3,c\n,d\n5,e\n,f\n")
    error = job_error(inspect, (first, second), "id")
    assert error.field == "input.key"
    assert "empty in 2 row(s)" in str(error)
    assert f"data row 2 of {second}" in str(error)


def test_key_duplicates_across_files_show_three_values(tmp_path: Path) -> None:
    first = write(tmp_path / "1.csv", "id,text\na,1\nb,2\nc,3\nd,4\n")
    second = write(tmp_path / "2.csv", "id,text\nd,5\nc,6\nb,7\na,8\nb,9\nz,0\n")
    error = job_error(inspect, (first, second), "id")
    assert error.field == "input.key"
    assert "4 value(s) used by more than one row (9 rows in all)" in str(error)
    assert "e.g. 'a', 'b', 'c';" in str(error)


def test_integer_key_duplicates_in_parquet(tmp_path: Path) -> None:
    pl.DataFrame({"id": [7, 8, 7]}).write_parquet(tmp_path / "k.parquet")
    error = job_error(inspect, (tmp_path / "k.parquet",), "id")
    assert "e.g. 7;" in str(error)


# --- unusable files ---------------------------------------------------------------------------


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    for name in ("e.csv", "e.parquet", "e.jsonl"):
        path = write(tmp_path / name, b"")
        error = job_error(inspect, (path,), "id")
        assert error.field == "input.path"
        assert f"{path} is empty" in str(error)


def test_parquet_files_with_different_dtypes(tmp_path: Path) -> None:
    pl.DataFrame({"id": ["a"], "n": [1]}).write_parquet(tmp_path / "1.parquet")
    pl.DataFrame({"id": ["b"], "n": ["one"]}).write_parquet(tmp_path / "2.parquet")
    files = find_files("*.parquet", tmp_path)
    for call, arg in ((inspect, "id"), (iter_batches, ["id"])):
        message = str(job_error(call, files, arg))
        assert "column 'n' is Int64 in" in message
        assert str(files[0]) in message
        assert f"String in {files[1]}" in message


def test_files_with_different_columns(tmp_path: Path) -> None:
    files = (
        write(tmp_path / "1.csv", "id,text\n1,a\n"),
        write(tmp_path / "2.csv", "id,body\n2,b\n"),
    )
    assert "missing: text; extra: body" in str(job_error(inspect, files, "id"))


def test_csv_mixed_with_typed_parquet_is_a_type_error(tmp_path: Path) -> None:
    csv = write(tmp_path / "1.csv", "id\n1\n")
    pl.DataFrame({"id": [2]}).write_parquet(tmp_path / "2.parquet")
    assert "is String in" in str(job_error(inspect, (csv, tmp_path / "2.parquet"), "id"))


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("garbage.parquet", b"PAR1 not really", "as PARQUET"),
        ("ragged.csv", "id,text\n1,a\n2,b,extra\n", "as CSV: found more fields"),
        ("quote.csv", 'id,text\n1,"never closed\n2,b\n', "as CSV"),
        ("utf16.csv", "id,text\n1,a\n".encode("utf-16"), "is UTF-16; save it as UTF-8"),
        ("syntax.jsonl", b'{"id": 1}\n\n{"id": 2,\n', "line 3: invalid JSON"),
        ("array.jsonl", b'{"id": 1}\n[1, 2]\n', "line 2: expected a JSON object, found list"),
        ("nothing.jsonl", b"\n\n", "holds no JSON object"),
    ],
)
def test_unparseable_files_name_the_file_and_problem(
    tmp_path: Path, name: str, data: bytes | str, expected: str
) -> None:
    path = write(tmp_path / name, data)
    message = str(job_error(inspect, (path,), "id"))
    assert str(path) in message
    assert expected in message


def test_jsonl_type_change_after_inference_points_at_the_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parsing, "_JSONL_INFER_LINES", 2)
    monkeypatch.setattr(parsing, "_JSONL_BLOCK_BYTES", 30)
    rows: list[dict[str, object]] = [
        {"id": 1, "n": 1},
        {"id": 2, "n": 2},
        {"id": 3, "n": 3},
        {"id": 4, "n": "four"},
    ]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    message = str(job_error(iter_batches, (path,), ["n"]))
    assert f"cannot read {path}: lines 4-4" in message
    assert "inferred from the first 2 lines" in message


def test_sample_comments_are_a_valid_input() -> None:
    sample = Path(__file__).parents[1] / "sample_data"
    files = find_files("comments.csv", sample)
    info = inspect(files, "comment_id")
    assert list(info.schema) == ["comment_id", "author", "posted_at", "text"]
    assert 300 <= info.rows <= 400
    texts = read_all(files, ["text"]).get_column("text")
    assert texts.null_count() >= 3
    longest = texts.str.len_chars().max()
    assert isinstance(longest, int) and longest >= 3000
    assert texts.drop_nulls().is_duplicated().any()


def test_check_rows_limits_the_key_checks_but_every_row_is_counted(tmp_path: Path) -> None:
    """A --limit run checks the keys it may read; the row count still covers every file."""
    write(tmp_path / "a.csv", "id,text\nx,1\ny,2\n,3\nx,4\n")  # a null in row 3, x again in 4
    pq.write_table(
        pa.table({"id": ["p", "q", "p"], "text": ["5", "6", "7"]}), tmp_path / "b.parquet"
    )
    files = find_files(str(tmp_path), tmp_path)
    assert inspect(files, "id", check_rows=2).rows == 7
    assert (
        "empty in 1 row(s), the first in data row 3"
        in job_error(lambda: inspect(files, "id", check_rows=3)).message
    )
    parquet_only = find_files("b.parquet", tmp_path)
    assert inspect(parquet_only, "id", check_rows=2).rows == 3
    error = job_error(lambda: inspect(parquet_only, "id", check_rows=3))
    assert "'p'" in error.message and error.field == "input.key"
