"""Token estimates for rate limiting: the client's rule (the emulator keeps its own copy in
``pipeline/emulator/facts.py``; a test checks that both charge the same)."""

from __future__ import annotations


def estimate_tokens(text: str) -> int:
    """About four characters a token, at least one; what both sides charge against a TPM limit."""
    return max(1, (len(text) + 3) // 4)
