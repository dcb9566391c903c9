"""The journal's lookups by key stay lookups: their cost follows the keys asked, not the rows held.

Counted in SQLite virtual-machine steps (a progress handler), not in time: a lookup that scans
the table instead of using the key's index costs steps in proportion to the rows held.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.journal import Journal, NewRow, Settled

HELD = 20_000


async def held_journal(folder: Path) -> Journal:
    journal = Journal(folder)
    journal.add(NewRow(f"k{i}", {"input": f"text {i}"}, 2, {}) for i in range(HELD))
    keys = [f"k{i}" for i in range(HELD)]
    await journal.mark_sent(keys, 1)
    await journal.settle([Settled(key, 1, result=[False]) for key in keys])
    return journal


def vm_steps(journal: Journal, call: object) -> int:
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0  # go on

    journal._db.set_progress_handler(count, 100)  # one call per 100 VM instructions
    try:
        assert callable(call)
        call()
    finally:
        journal._db.set_progress_handler(None, 0)
    return steps[0] * 100


async def test_lookups_by_key_cost_the_keys_asked_not_the_rows_held(tmp_path: Path) -> None:
    journal = await held_journal(tmp_path)
    asked = [f"k{i}" for i in range(0, HELD, 2_000)]  # 10 keys
    found: dict[str, object] = {}
    steps = vm_steps(journal, lambda: found.update(journal.done_among_earlier(asked, HELD + 1)))
    assert sorted(found) == sorted(asked), "all done, all added before that position"
    assert steps < 2_000, f"{steps} VM steps for 10 keys: a scan of the {HELD:,} rows held?"
    # k0 was added at position 1 and k2000 at 2,001: only k0 is below 2,001
    assert journal.done_among_earlier(asked, 2_001) == {"k0": found["k0"]}
    steps = vm_steps(journal, lambda: journal.known(asked))
    assert steps < 2_000, f"{steps} VM steps for 10 keys"
    journal.close()
