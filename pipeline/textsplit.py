"""Split long text into chunks a speech request accepts, at the most natural boundaries available.

Boundaries rank: paragraph break (a blank line or U+2029), sentence end (``. ! ? … ‽``, the CJK
full stop ``。`` and full-width marks, then any closing quotes or brackets, as in ``."``), clause
boundary (``; : ,``, dashes, CJK ``、`` and full-width marks, a single line break), a space between
words, and last a grapheme boundary inside a "word" that alone is over the limit (a URL, or
Chinese, Japanese or Thai without spaces). CJK punctuation and word-joining dashes count with no
space after them. No-break spaces never count, and ``Mr. Mrs. Ms. Dr. St.`` end no sentence.

Each chunk is greedy: it ends at the furthest boundary of the best rank found within the limit,
except that a paragraph break filling less than half the limit gives way to a later sentence end,
so chunks stay few (10,000 characters of English prose make 3 chunks, not 4). Each step costs a
few regular-expression scans of one window, so the whole split is linear in the text's length.

Whitespace at a boundary ends the earlier chunk, so the next chunk starts with text. Only a run of
whitespace too long to fit beside its neighbours is cut inside: its rest opens the next chunk, or
stands alone rather than a word being cut. That, and a text that is all whitespace, are the only
sources of whitespace-only chunks.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["SPEECH_INPUT_LIMIT", "split_text"]

SPEECH_INPUT_LIMIT = 4096  # characters per CreateSpeechRequest.input

_NO_BREAK = "\xa0\u2007\u202f"  # no-break spaces: the author asked not to break here
_WS = rf"[^\S{_NO_BREAK}]"  # whitespace a line may break at
_NEXT = rf"(?=[\S{_NO_BREAK}])"  # a chunk starts with text, never with breakable whitespace
# closing quotes and brackets, ASCII, typographic and CJK: they stay with the sentence they end
_CLOSERS = re.escape("\"')]}»›”’」』》〉】〕）］｝＂＇")  # noqa: RUF001
_CLOSE = rf"[{_CLOSERS}]"
_NEXT_TIGHT = rf"(?=[^\s{_CLOSERS}—\-])"  # after punctuation with no space: not mid-cluster
_LINE_BREAK = r"(?>\r\n|[\n\r\x0b\x0c\x85\u2028])"  # atomic: \r\n is one break, not two
_TITLES = "".join(rf"(?<!\b{t})" for t in ("Mr", "Mrs", "Ms", "Dr", "St"))
_SENTENCE_END = rf"(?:{_TITLES}\.|[!?…‽。！？｡])"  # noqa: RUF001
_CJK_SENTENCE_END = "[。！？｡]"  # noqa: RUF001
_CLAUSE_END = "[;:,—–，、；：､]"  # noqa: RUF001
_CJK_CLAUSE_END = "[，、；：､]"  # noqa: RUF001

_RUN = rf"(?<!{_WS})"  # a whitespace run is tried from its first character only: linear time

# Each pattern, matched at a chunk's start, finds the furthest boundary of its rank in the window:
# the leading (?s).* runs to the window's end and backs off until the boundary matches.
_RANKS = tuple(
    re.compile("(?s).*" + boundary)
    for boundary in (
        rf"{_RUN}(?=(?:{_WS}*?{_LINE_BREAK}){{2}}|{_WS}*?\u2029){_WS}*+{_NEXT}",
        rf"(?:{_SENTENCE_END}{_CLOSE}*+{_WS}++{_NEXT}|{_CJK_SENTENCE_END}{_CLOSE}*+{_NEXT_TIGHT})",
        rf"(?:{_CLAUSE_END}{_CLOSE}*+{_WS}++{_NEXT}|{_RUN}(?={_WS}*?{_LINE_BREAK}){_WS}*+{_NEXT}"
        rf"|(?:{_CJK_CLAUSE_END}|(?<!—)—++|(?<!-)-{{2,}}+){_CLOSE}*+{_NEXT_TIGHT})",
        rf"{_WS}{_NEXT}",
    )
)
_PARAGRAPH, _SENTENCE = _RANKS[0], _RANKS[1]
_ANY_WS = re.compile(r"\s")

_ZWJ = "\u200d"
_REGIONAL_INDICATORS = range(0x1F1E6, 0x1F200)
_HANGUL_LEADING = (range(0x1100, 0x1160), range(0xA960, 0xA97D))
_HANGUL_VOWEL_OR_TRAILING = (range(0x1160, 0x1200), range(0xD7B0, 0xD7FC))
_HANGUL_SYLLABLES = range(0xAC00, 0xD7A4)
_EXTENDERS = (  # join the character before them: variation selectors, skin tones, tags
    range(0xFE00, 0xFE10),
    range(0x1F3FB, 0x1F400),
    range(0xE0020, 0xE0080),
    range(0xE0100, 0xE01F0),
)
_SPACING_MARKS = "\u0e33\u0eb3"  # Thai and Lao SARA AM: letters by category, marks in clusters


def split_text(text: str, limit: int = SPEECH_INPUT_LIMIT) -> list[str]:
    """Split ``text`` into chunks of at most ``limit`` characters that join back to it exactly.

    ``limit`` counts code points (``len`` of a Python str): an accented letter or an emoji
    written as several code points counts as several.
    Chunks are non-empty and ``"".join(chunks) == text``; ``""`` gives ``[]`` and a text within
    the limit gives ``[text]``, even if it is all whitespace (a caller may skip such chunks).
    Chunks break inside a word only when the word alone is over the limit, and inside a grapheme
    (a letter and its combining marks, an emoji ZWJ sequence, a flag) only when that grapheme
    alone is. Raises ValueError if ``limit`` is below 1.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    chunks: list[str] = []
    start = 0
    while len(text) - start > limit:
        end = _chunk_end(text, start, limit)
        chunks.append(text[start:end])
        start = end
    if start < len(text):
        chunks.append(text[start:])
    return chunks


def _chunk_end(text: str, start: int, limit: int) -> int:
    """Where the chunk starting at ``start`` ends: the best boundary in (start, start + limit]."""
    window = text[start : start + limit]
    floor = start + len(window) - len(window.lstrip())  # a cut must leave text in the chunk
    paragraph = _furthest(_PARAGRAPH, text, start, floor, limit)
    if paragraph is not None and paragraph - start >= limit // 2:
        return paragraph
    sentence = _furthest(_SENTENCE, text, start, floor, limit)
    if paragraph is not None or sentence is not None:
        return max(b for b in (paragraph, sentence) if b is not None)
    for rank in _RANKS[2:]:
        boundary = _furthest(rank, text, start, floor, limit)
        if boundary is not None:
            return boundary
    return _forced_end(text, start, floor, limit)


def _furthest(rank: re.Pattern[str], text: str, start: int, floor: int, limit: int) -> int | None:
    """The furthest grapheme-safe boundary of ``rank`` in (floor, start + limit], if any."""
    end = start + limit
    while (match := rank.match(text, start, end + 1)) is not None:
        boundary = match.end()
        if boundary <= floor:
            return None
        if _is_grapheme_boundary(text, boundary, start):
            return boundary
        end = boundary - 1
    return None


def _forced_end(text: str, start: int, floor: int, limit: int) -> int:
    """A cut with no word boundary in reach: inside a long whitespace run or a long word."""
    end = start + limit
    word_fits = len(text) - floor <= limit or _ANY_WS.search(text, floor, floor + limit + 1)
    if start < floor < end and word_fits and _is_grapheme_boundary(text, floor, start):
        return floor  # leftover whitespace stands alone rather than cutting the word after it
    for cut in range(end, start, -1):
        if _is_grapheme_boundary(text, cut, start):
            return cut
    return end  # one grapheme longer than the limit: cut between code points


def _is_grapheme_boundary(text: str, i: int, start: int) -> bool:
    """Whether a cut before ``text[i]`` leaves every user-perceived character whole.

    ``start`` is a known boundary before ``i``: flags are counted from there, not from the text's
    beginning, so a long run of flags costs linear time.
    """
    before, after = text[i - 1], text[i]
    b, a = ord(before), ord(after)
    if before == _ZWJ or after == _ZWJ or (before == "\r" and after == "\n"):
        return False
    if after in _SPACING_MARKS or any(a in r for r in _EXTENDERS):
        return False
    if unicodedata.combining(after) or unicodedata.category(after) in ("Mn", "Mc", "Me"):
        return False
    if 0xD800 <= b < 0xDC00 <= a < 0xE000:  # a surrogate pair smuggled in through surrogatepass
        return False
    if _is_hangul(b) and any(a in r for r in _HANGUL_VOWEL_OR_TRAILING):
        return False  # conjoining jamo: a syllable spelled out letter by letter
    if any(b in r for r in _HANGUL_LEADING) and (
        a in _HANGUL_SYLLABLES or any(a in r for r in _HANGUL_LEADING)
    ):
        return False
    if b in _REGIONAL_INDICATORS and a in _REGIONAL_INDICATORS:
        run = 0  # flags are pairs: cut only after an even number of indicators
        while i - run - 1 >= start and ord(text[i - run - 1]) in _REGIONAL_INDICATORS:
            run += 1
        return run % 2 == 0
    return True


def _is_hangul(code: int) -> bool:
    return code in _HANGUL_SYLLABLES or any(
        code in r for r in (*_HANGUL_LEADING, *_HANGUL_VOWEL_OR_TRAILING)
    )
