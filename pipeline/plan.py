"""A job, planned: the job file read, its base URL resolved (flag > job > env), its kind built
with that URL, its input inspected, and everything that could make its outputs fail checked.

``validate`` and ``run`` both start here; nothing is sent and, for ``validate``, nothing is
written.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from pipeline import cost, preflight, readers, shutdowns
from pipeline.errors import JobError
from pipeline.job import JobSource, JobSpec, OutputSpec, read_job, resolve_base_url
from pipeline.journal import rows_held
from pipeline.kinds import Kind, kind_classes, make_kind


@dataclass(frozen=True)
class Plan:
    """A job with its kind and its input, checked against each other; ``job.api.base_url`` is
    the resolved base URL (``"local"`` for the embedded emulator)."""

    job: JobSpec
    kind: Kind
    input: readers.InputInfo
    warnings: tuple[str, ...] = ()  # what validate prints and run logs: shutdowns.py

    @property
    def local_emulator(self) -> dict[str, Any]:
        """What the kind asks of the embedded emulator (EmulatorConfig fields), e.g. a speech
        job's provider mode."""
        return dict(getattr(self.kind, "local_emulator", {}))

    @property
    def base_url(self) -> str:
        assert self.job.api.base_url is not None  # resolved by make_plan
        return self.job.api.base_url


def make_plan(
    source: JobSource,
    output: Path | None = None,
    *,
    base_url: str | None = None,
    limit: int | None = None,
    for_run: bool = False,
) -> Plan:
    """Load the job and inspect its input; JobError for anything that makes it unusable.

    ``base_url`` is the --base-url flag: resolved with the job's and the environment's before
    the kind is built, so a kind's defaults (the run protocol) follow the URL really used. With
    ``limit`` (--limit N) the keys are checked only as far as the run can read: N rows more than
    the journal holds, since the reader stops once it has N new ones. ``for_run``: the
    pre-flight probes the output folder by writing to it (validate only looks). ``source`` is
    a job file's path, a dict of its tables or a JobSpec (``job.read_job``)."""
    job = read_job(source, {name: cls.sections for name, cls in kind_classes().items()})
    job = replace(job, api=replace(job.api, base_url=resolve_base_url(job, base_url)))
    if output is not None:
        job = replace(job, output=OutputSpec(output.resolve(), job.output.format))
    kind = make_kind(job)
    check_rows = None if limit is None else limit + rows_held(job.output.dir)
    try:
        files = readers.find_files(job.input.path, job.base_dir)
        info = readers.inspect(files, job.input.key, check_rows=check_rows)
    except JobError as error:
        if error.path is not None and error.path != str(job.path):
            raise JobError(
                f"{error.path}: {error.message}", path=str(job.path), field=error.field
            ) from None
        raise JobError(error.message, path=str(job.path), field=error.field) from None
    available = list(info.schema)
    wanted = [(col, "input.keep") for col in job.input.keep]
    wanted += [(col, "request") for col in sorted(kind.columns)]
    wanted += getattr(kind, "section_columns", [])  # (column, field) a kind's own table names
    for column, where in wanted:
        if column not in info.schema:
            close = difflib.get_close_matches(column, available, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"columns: {', '.join(available)}"
            raise JobError(
                f"names column '{column}', which the input does not have; {hint}",
                path=str(job.path),
                field=where,
            )
    preflight.check(job, kind, info, create=for_run, full=limit is None)
    cost.load_prices()  # a price file broken by an edit stops the job before it sends
    warnings = shutdowns.warnings(
        job, job.api.base_url or "", column_values=partial(_distinct, info, set(available))
    )
    return Plan(job, kind, info, tuple(warnings))


def _distinct(info: readers.InputInfo, available: set[str], column: str) -> set[str]:
    """The distinct values of one input column, as text (a model named per row)."""
    if column not in available:
        return set()
    values: set[str] = set()
    for frame in readers.iter_batches(info.files, [column], batch_size=100_000):
        values.update(str(value) for value in frame.get_column(column).unique().to_list())
    return values
