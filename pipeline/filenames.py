"""File names built from data, made safe: no separators, no ``..``, no control characters.

A name is one path component, portable to Windows and macOS, at most ``MAX_STEM_BYTES`` of UTF-8;
uniqueness across rows is the journal's job (``Journal.claim_name``), not this module's.
"""

from __future__ import annotations

import re
import unicodedata

MAX_STEM_BYTES = 120
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)


def safe_stem(text: str) -> str:
    """``text`` as one safe file-name stem; never empty."""
    stem = unicodedata.normalize("NFC", text)
    stem = _UNSAFE.sub("_", stem)
    stem = "".join(ch for ch in stem if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp"))
    stem = stem.strip().lstrip(".").rstrip(". ")
    encoded = stem.encode()
    if len(encoded) > MAX_STEM_BYTES:
        stem = encoded[:MAX_STEM_BYTES].decode(errors="ignore").rstrip(". ")
    if not stem or stem in (".", ".."):
        return "_"
    if _RESERVED.match(stem):
        return f"_{stem}"
    return stem
