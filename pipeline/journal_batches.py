"""The journal's side of the feed's skip of unchanged input batches (``pipeline/feed.py``): the
digest of each input batch checked against the requests built from it, and the lookup the feed
compares a batch with."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from pipeline.rows import State

ADOPTED = "adopted"  # request_hash of a key adopted from output files (--rebuild-journal)


class BatchLedger:
    """Mixed into Journal."""

    _db: sqlite3.Connection

    def _rows_for_keys(
        self, keys: Sequence[Any], sql: str, *more: Any
    ) -> Iterator[tuple[Any, ...]]:
        raise NotImplementedError  # Journal's

    def held_among(self, keys: Sequence[Any]) -> dict[Any, tuple[State, int, str]]:
        """The state, input position and request hash (hex, or ADOPTED) of those of these keys
        held."""
        return {
            key: (state, seq, ADOPTED if digest is None else digest.hex())
            for key, state, seq, digest in self._rows_for_keys(
                keys, "SELECT key, state, seq, request_hash FROM rows WHERE key IN ({})"
            )
        }

    def batch_digests(self) -> dict[int, str]:
        """The digest of each input batch checked against the requests built from it."""
        return dict(self._db.execute("SELECT batch, digest FROM batch_digests"))

    def record_batch_digest(self, batch: int, digest: str) -> None:
        """Called once every key of the batch is committed with its request built from it."""
        self._db.execute("INSERT OR REPLACE INTO batch_digests VALUES (?, ?)", (batch, digest))

    def forget_batch_digest(self, batch: int) -> None:
        self._db.execute("DELETE FROM batch_digests WHERE batch = ?", (batch,))
