"""The journal's side of the outputs: which done rows still hold their values, which part holds
each flushed result, the results to take out of a part before a key's new one lands, and the
file names claimed by keys (speech audio).

``pipeline.store`` writes the files; every change of this state is one transaction here, made
after the file it describes is in place (so after a crash the journal never names a part that
is not there, and a part it does not name is a leftover to delete).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import orjson

RESULT_COLUMNS = "result_columns"  # meta: the names of the values in rows.result
STORE = "results_store"  # meta: {format, bytes (csv/jsonl committed length), schema}


class Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if kind is not None else "COMMIT")


class ResultsLedger:
    """Mixed into Journal: the statements about results held and results written."""

    _db: sqlite3.Connection
    _next_seq: int
    errors_changed: int
    held: int
    result_names: list[str]  # the result columns a done row's values are stored under

    def _transaction(self) -> Transaction:
        return Transaction(self._db)

    def held_count(self) -> int:
        """Done rows whose values are still in the journal (not yet in the results output)."""
        return int(
            self._db.execute(
                "SELECT COUNT(*) FROM rows WHERE state = 'done' AND part IS NULL"
            ).fetchone()[0]
        )

    def held_results(
        self, limit: int, chunk: int = 10_000
    ) -> Iterator[tuple[int, list[tuple[Any, dict[str, Any], Any, int]]]]:
        """(key, keep, result values, attempts) of at most ``limit`` done rows still held, in
        input order, in chunks, each with the input position of its last row."""
        last, left = 0, limit
        while left > 0:
            rows = self._db.execute(
                "SELECT seq, key, keep, result, attempts FROM rows JOIN held USING (key) "
                "WHERE state = 'done' AND part IS NULL AND seq > ? ORDER BY seq LIMIT ?",
                (last, min(chunk, left)),
            ).fetchall()
            if not rows:
                return
            last, left = rows[-1][0], left - len(rows)
            yield (
                last,
                [
                    (key, orjson.loads(keep), orjson.loads(value), attempts)
                    for _, key, keep, value, attempts in rows
                ],
            )

    def failed_rows(
        self, chunk: int = 10_000
    ) -> Iterator[list[tuple[Any, dict[str, Any], Any, int]]]:
        """(key, keep, error fields, attempts) of failed rows in input order, in chunks."""
        last = 0
        while rows := self._db.execute(
            "SELECT seq, key, keep, error, attempts FROM rows LEFT JOIN held USING (key) "
            "WHERE state = 'failed' AND part IS NULL AND seq > ? ORDER BY seq LIMIT ?",
            (last, chunk),
        ).fetchall():
            last = rows[-1][0]
            yield [
                (key, orjson.loads(keep or b"{}"), orjson.loads(value), attempts)
                for _, key, keep, value, attempts in rows
            ]

    def commit_part(self, file: int, through_seq: int, store: dict[str, Any]) -> int:
        """Record that the held results up to input position ``through_seq`` are now in
        ``file`` (in place already): their values leave the journal, in one transaction with
        the store's new description. The caller read them in this same call on the loop's
        thread, so no other row became done and held below that position in between."""
        held = "state = 'done' AND part IS NULL AND seq <= ?"
        with self._transaction():
            part = self._db.execute("INSERT INTO parts (file) VALUES (?)", (file,)).lastrowid
            self._db.execute(
                f"DELETE FROM held WHERE key IN (SELECT key FROM rows WHERE {held})",
                (through_seq,),
            )
            self._db.execute(f"UPDATE rows SET part = ? WHERE {held}", (part, through_seq))
            self._set_store(store)
        assert part is not None
        return part

    def reclaim(self) -> None:
        """Give the pages freed by flushed rows back to the file system. A journal made before
        incremental vacuuming (migrated) is vacuumed once, when it is mostly free pages."""
        if self._db.execute("PRAGMA auto_vacuum").fetchone()[0]:
            self._db.executescript("PRAGMA incremental_vacuum")  # execute() frees one page
            return
        (free,) = self._db.execute("PRAGMA freelist_count").fetchone()
        (pages,) = self._db.execute("PRAGMA page_count").fetchone()
        if free > pages // 2:
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self._db.execute("VACUUM")

    def set_store(self, store: dict[str, Any], merged: Iterable[int] = (), into: int = 0) -> None:
        """Record the store's description; parts in the files ``merged`` are now in ``into``."""
        with self._transaction():
            self._db.executemany(
                "UPDATE parts SET file = ? WHERE file = ?", [(into, file) for file in merged]
            )
            self._set_store(store)

    def _set_store(self, store: dict[str, Any]) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (STORE, orjson.dumps(store)))

    def store(self) -> dict[str, Any] | None:
        """The results store as last committed (None: nothing written by this version yet)."""
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (STORE,)).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    def part_files(self) -> set[int]:
        """The files that hold flushed results."""
        return {file for (file,) in self._db.execute("SELECT DISTINCT file FROM parts")}

    def moved_out(self) -> dict[int, list[str]]:
        """Per file, the keys whose old result must leave it before their new outcome is
        written: those settled again since they were requeued."""
        moved: dict[int, list[str]] = {}
        for key, file in self._db.execute(
            "SELECT moved.key, parts.file FROM moved JOIN parts ON parts.id = moved.part "
            "JOIN rows ON rows.key = moved.key WHERE rows.state IN ('done', 'failed')"
        ):
            moved.setdefault(file, []).append(key)
        return moved

    def forget_moved(self, keys: Iterable[str]) -> None:
        """Their old results are out of their parts."""
        with self._transaction():
            self._db.executemany("DELETE FROM moved WHERE key = ?", [(key,) for key in keys])

    def use_result_columns(self, names: Sequence[str], chunk: int = 10_000) -> int:
        """Make the held results follow ``names``, this version's result columns, by name: a
        column new here is null in the rows answered before, one gone is dropped. Values are
        never matched by position across versions (the results already written are converted
        by the store, by name). One transaction; returns the rows rewritten."""
        stored = self._meta(RESULT_COLUMNS)
        self.result_names = list(names)
        if stored == list(names):
            return 0
        rewritten = 0
        with self._transaction():
            if stored is not None:
                where = {name: index for index, name in enumerate(stored)}
                picks = [where.get(name) for name in names]
                for _, rows in self.held_results(1 << 62, chunk):
                    updates = []
                    for key, _, values, _ in rows:
                        moved = [None if i is None else values[i] for i in picks]
                        updates.append((orjson.dumps(moved), key))
                    self._db.executemany("UPDATE held SET result = ? WHERE key = ?", updates)
                    rewritten += len(updates)
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                (RESULT_COLUMNS, orjson.dumps(list(names))),
            )
        return rewritten

    def _meta(self, name: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    def adopt(self, rows: Iterable[tuple[str, str, dict[str, Any], Any, int]]) -> int:
        """Insert settled keys found in output files whose journal was lost: (key, done or
        failed, keep, result values or error fields, attempts), all in one transaction; a key
        seen twice keeps its first row. They are held here until the run flushes them; their
        request is unknown (no hash) until a run builds it from the input. Returns how many
        keys were inserted."""

        adopted = 0
        with self._transaction():  # all or nothing: a kill mid-way leaves an empty journal
            for key, state, keep, value, attempts in rows:
                done = state == "done"
                inserted = self._db.execute(
                    "INSERT OR IGNORE INTO rows (key, seq, state, error, attempts) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (key, self._next_seq, state, None if done else orjson.dumps(value), attempts),
                ).rowcount
                if inserted:
                    self._db.execute(
                        "INSERT INTO held (key, keep, result) VALUES (?, ?, ?)",
                        (key, orjson.dumps(keep), orjson.dumps(value) if done else None),
                    )
                    self._next_seq += 1
                    adopted += 1
        self.errors_changed += 1
        return adopted

    def claim_name(
        self, stem: str, suffix: str, key: Any, taken: Callable[[str], bool] = lambda _: False
    ) -> str:
        """A file name for ``key``: ``stem + suffix``, or ``stem~N + suffix`` if another key has
        it, or ``taken(name)`` says a file nobody claimed is there (a user's, or one adopted by
        --rebuild-journal): never overwritten. The same key always gets the same name back."""
        attempt = 1
        while True:
            name = f"{stem}{suffix}" if attempt == 1 else f"{stem}~{attempt}{suffix}"
            row = self._db.execute(
                "SELECT key FROM names WHERE folded = ?", (name.lower(),)
            ).fetchone()
            if row is None and not taken(name):
                self._db.execute("INSERT INTO names VALUES (?, ?, ?)", (name.lower(), name, key))
                return name
            if row is not None and row[0] == key:
                return name
            attempt += 1

    def adopt_names(self, names: Iterable[tuple[str, str]]) -> None:
        """Record (key, file name) pairs found in adopted results as claimed by those keys."""
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO names VALUES (?, ?, ?)",
                ((name.lower(), name, key) for key, name in names),
            )
