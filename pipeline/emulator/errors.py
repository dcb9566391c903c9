"""EmulatorError: why an emulator cannot start; its own, so the emulator shares no client module.

Raised for an engine whose extra is not installed and for a host that is not loopback without
``allow_remote``; ``pipeline serve`` and ``base_url = "local"`` turn it into the CLI's exit 2.
A config with a bad value raises ValueError when it is built, as any bad argument does.
"""

from __future__ import annotations


class EmulatorError(Exception):
    """This emulator cannot start; the message says what to install or which flag to add."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)
