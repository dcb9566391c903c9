"""Token estimates for rate limiting: the one rule shared by the client and the emulator."""

from __future__ import annotations


def estimate_tokens(text: str) -> int:
    """About four characters a token, at least one; what both sides charge against a TPM limit."""
    return max(1, (len(text) + 3) // 4)
