"""Every error the pipeline raises, as a tree; only ``cli.py`` turns them into exit codes.

PipelineError
 +-- JobError            the job file or its input is unusable (exit 2)
 +-- RowError            one row cannot become a valid request; becomes an error row
 +-- LockedError         another run holds the output folder (exit 75)
 +-- StorageError        the output folder or its journal cannot be written mid-run (disk full,
 |                       read-only, I/O error): the run stops, nothing is lost (exit 74)
 +-- ApiError            the API answered with an error or did not answer
      +-- TransientApiError   retried: 408/409/429/5xx, timeouts, dropped connections
      +-- RejectedApiError    not retried: other 4xx; the rows it carried fail
      +-- FatalApiError       stops the job: 401/403, insufficient_quota (exit 3)
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""


class JobError(PipelineError):
    """The job file or its input cannot be used; the message names the file, field and fix."""

    def __init__(self, message: str, *, path: str | None = None, field: str | None = None) -> None:
        self.message = message
        self.path = path
        self.field = field
        where = ": ".join(part for part in (path, field) if part)
        super().__init__(f"{where}: {message}" if where else message)


class RowError(PipelineError):
    """One row cannot become a valid request; it becomes an error row and the job goes on."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        self.message = message
        super().__init__(message)


class LockedError(PipelineError):
    """Another live run holds the output folder's lock."""

    def __init__(self, message: str, *, pid: int | None = None) -> None:
        self.pid = pid
        super().__init__(message)


class StorageError(PipelineError):
    """Writing the output folder (journal, audio, results) failed; the run stops cleanly.

    ``path`` is what could not be written; the message says what happened and the fix. What
    was answered before is in the journal, so a rerun once fixed loses nothing.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.message = message
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class ApiError(PipelineError):
    """The API answered with an error, or the connection failed."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        error_type: str | None = None,
        error_code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.http_status = http_status
        self.error_type = error_type
        self.error_code = error_code
        self.param = param
        self.retry_after = retry_after
        super().__init__(message)


class TransientApiError(ApiError):
    """Worth retrying: rate limited, server error, timeout or connection error."""


class RejectedApiError(ApiError):
    """The server refused this request (a 4xx other than 401/403/408/409/429); not retried."""


class FatalApiError(ApiError):
    """No request can succeed (bad key, no quota): the job stops, resumable (exit 3)."""
