"""split_text: exact joins, the limit, boundary preference, scripts without spaces, graphemes."""

from __future__ import annotations

import itertools
import random
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.textsplit import SPEECH_INPUT_LIMIT, split_text

WORDS = ("alice", "rabbit", "watch", "garden", "door", "key", "bottle", "curious", "little")
SENTENCE_ENDS = (".", ".", ".", "?", "!", ".'", '."', "?’", "…")  # noqa: RUF001
CLAUSE_MARKS = {";", ":", ",", "—", "–", "，", "、", "；", "："}  # noqa: RUF001
PUNCTUATION = set(".!?…‽。！？｡\"')]}»›”’」』》〉】〕）") | CLAUSE_MARKS | {"-"}  # noqa: RUF001
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # 7 code points
FLAG_FR = "\U0001f1eb\U0001f1f7"


def sentence(rng: random.Random, words: tuple[int, int] = (4, 24)) -> str:
    body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(*words)))
    if rng.random() < 0.3:
        body = body.replace(" ", ", ", 1)
    return body[0].upper() + body[1:] + rng.choice(SENTENCE_ENDS)


def prose(rng: random.Random, length: int, paragraph_sentences: tuple[int, int] = (2, 9)) -> str:
    paragraphs: list[str] = []
    total = 0
    while total < length:
        paragraph = " ".join(sentence(rng) for _ in range(rng.randint(*paragraph_sentences)))
        paragraphs.append(paragraph)
        total += len(paragraph) + 2
    return "\n\n".join(paragraphs)[:length]


def boundaries(chunks: list[str]) -> list[int]:
    positions, at = [], 0
    for chunk in chunks[:-1]:
        at += len(chunk)
        positions.append(at)
    return positions


def check_invariants(text: str, chunks: list[str], limit: int) -> None:
    assert "".join(chunks) == text
    assert all(chunks), "empty chunk"
    assert all(len(chunk) <= limit for chunk in chunks)


SENTENCE_END = re.compile(r"[.!?…][\"'’]* ")  # noqa: RUF001


def is_sentence_end(head: str) -> bool:
    head = head.rstrip().rstrip("\"'’”)")  # noqa: RUF001
    return head.endswith((".", "!", "?", "…"))


# --- the contract ---------------------------------------------------------------------------


def test_empty_text_gives_no_chunks() -> None:
    assert split_text("") == []


def test_text_within_limit_is_one_chunk() -> None:
    text = "Alice was beginning to get very tired. " * 100
    assert len(text) <= SPEECH_INPUT_LIMIT
    assert split_text(text) == [text]
    assert split_text("x" * 4096) == ["x" * 4096]


def test_whitespace_only_text_is_kept() -> None:
    assert split_text(" \n\t ") == [" \n\t "]
    chunks = split_text(" " * 10_000)
    check_invariants(" " * 10_000, chunks, SPEECH_INPUT_LIMIT)
    assert len(chunks) == 3


@pytest.mark.parametrize("limit", [0, -5])
def test_limit_below_one_is_refused(limit: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        split_text("some text", limit)


def test_limit_counts_code_points() -> None:
    text = "é" * 5000  # two bytes each in UTF-8; the limit is on str length
    assert [len(chunk) for chunk in split_text(text)] == [4096, 904]


# --- boundary preference ----------------------------------------------------------------------


def test_ten_thousand_characters_of_english_make_three_chunks() -> None:
    text = prose(random.Random(7), 10_000)
    chunks = split_text(text)
    check_invariants(text, chunks, SPEECH_INPUT_LIMIT)
    assert len(chunks) == 3


@pytest.mark.parametrize("seed", range(5))
def test_normal_text_never_splits_inside_words(seed: int) -> None:
    text = prose(random.Random(seed), 30_000)
    chunks = split_text(text, 1000)
    check_invariants(text, chunks, 1000)
    for at in boundaries(chunks):
        assert text[at - 1].isspace() or text[at - 1] in PUNCTUATION, text[at - 20 : at + 20]
        assert not text[at].isspace()


@pytest.mark.parametrize("seed", range(5))
def test_sentences_under_the_limit_are_never_split(seed: int) -> None:
    rng = random.Random(seed)
    text = " ".join(sentence(rng, (30, 120)) for _ in range(200))  # long sentences, one paragraph
    chunks = split_text(text, 1000)
    check_invariants(text, chunks, 1000)
    assert all(is_sentence_end(chunk) for chunk in chunks[:-1])


def test_chunks_fill_up_to_the_last_sentence_that_fits() -> None:
    rng = random.Random(3)
    text = " ".join(sentence(rng) for _ in range(400))
    chunks = split_text(text, 2000)
    for chunk, following in itertools.pairwise(chunks):
        first_sentence = SENTENCE_END.search(following)
        assert first_sentence is not None
        assert len(chunk) + first_sentence.end() > 2000  # the next sentence did not fit


def test_paragraph_breaks_come_first() -> None:
    rng = random.Random(11)
    text = prose(rng, 20_000, paragraph_sentences=(2, 4))
    chunks = split_text(text, 3000)
    check_invariants(text, chunks, 3000)
    assert all(chunk.endswith("\n\n") for chunk in chunks[:-1])


def test_a_short_paragraph_does_not_make_its_own_chunk() -> None:
    title = "CHAPTER I. Down the Rabbit-Hole\n\n"
    body = " ".join(sentence(random.Random(5)) for _ in range(120))
    chunks = split_text(title + body, 4096)
    assert chunks[0].startswith(title) and len(chunks[0]) > 4096 // 2
    assert is_sentence_end(chunks[0])


def test_closing_quotes_stay_with_their_sentence() -> None:
    text = 'She said "Stop." Then she left, and the door closed behind her quietly.'
    assert split_text(text, 20) == [
        'She said "Stop." ',
        "Then she left, ",
        "and the door closed ",
        "behind her quietly.",
    ]


def test_titles_are_not_sentence_ends() -> None:
    text = "It was Mr. Bennet who spoke. Then Mrs. Bennet answered him"
    chunks = split_text(text, 40)
    assert chunks == ["It was Mr. Bennet who spoke. ", "Then Mrs. Bennet answered him"]


def test_clauses_come_before_words() -> None:
    text = "one two three four five six, seven eight nine ten eleven twelve thirteen"
    assert split_text(text, 50)[0] == "one two three four five six, "


def test_text_without_punctuation_splits_at_spaces() -> None:
    rng = random.Random(2)
    text = " ".join(rng.choice(WORDS) for _ in range(3000))
    chunks = split_text(text, 500)
    check_invariants(text, chunks, 500)
    longest_word = max(len(w) for w in WORDS)
    for chunk in chunks[:-1]:
        assert chunk.endswith(" ") and not chunk[0].isspace()
        assert len(chunk) > 500 - longest_word - 1  # greedy: packed to the last word that fits


def test_no_break_spaces_are_respected() -> None:
    text = "aaaa bbbb\xa0cccc"
    assert split_text(text, 12) == ["aaaa ", "bbbb\xa0cccc"]


# --- scripts without spaces, long words, graphemes ----------------------------------------------


def test_cjk_without_spaces_splits_after_punctuation() -> None:
    text = "我们今天去公园散步，天气很好。她说：「真开心！」然后我们回家了。" * 300  # noqa: RUF001
    chunks = split_text(text, 1000)
    check_invariants(text, chunks, 1000)
    for chunk in chunks[:-1]:
        assert chunk[-1] in "。」", chunk[-5:]  # sentence ends win over commas
        assert chunk[-1] != "」" or chunk[-2] == "！"  # noqa: RUF001


def test_cjk_clause_punctuation_when_no_sentence_end_fits() -> None:
    text = "天气很好，" * 300  # noqa: RUF001
    chunks = split_text(text, 1002)
    check_invariants(text, chunks, 1002)
    assert [len(chunk) for chunk in chunks] == [1000, 500]


def test_text_without_spaces_or_punctuation_is_cut_at_the_limit() -> None:
    text = "ภาษาไทยไม่มีช่องว่างระหว่างคำ" * 300  # Thai: vowel signs above and below letters
    chunks = split_text(text, 1000)
    check_invariants(text, chunks, 1000)
    assert all(len(chunk) >= 999 for chunk in chunks[:-1])
    for chunk in chunks:
        assert unicodedata.category(chunk[0])[0] != "M" and chunk[0] != "\u0e33"


def test_a_five_thousand_character_word() -> None:
    url = "https://example.org/" + "a1b2c3d4" * 623
    text = "See " + url + " for details. The end."
    chunks = split_text(text)
    check_invariants(text, chunks, SPEECH_INPUT_LIMIT)
    assert chunks[0] == "See "  # the word starts its own chunk, then is cut only where it must
    assert chunks[1] == url[:4096]
    assert chunks[2] == url[4096:] + " for details. The end."


def test_combining_marks_stay_with_their_letter() -> None:
    text = "e\u0301" * 3000  # a naive cut at 4095 would strand an accent
    chunks = split_text(text, 4095)
    check_invariants(text, chunks, 4095)
    assert [len(chunk) for chunk in chunks] == [4094, 1906]
    assert all(not unicodedata.combining(chunk[0]) for chunk in chunks)


def test_emoji_zwj_sequences_stay_whole() -> None:
    text = FAMILY * 1000
    chunks = split_text(text, 4096)  # 4096 = 585 families and one code point
    check_invariants(text, chunks, 4096)
    assert all(chunk == FAMILY * (len(chunk) // 7) for chunk in chunks)
    assert len(chunks[0]) == 4095


def test_emoji_modifiers_and_variation_selectors_stay_whole() -> None:
    thumbs = "\U0001f44d\U0001f3fd"  # thumbs up, medium skin tone
    heart = "\u2764\ufe0f"
    text = (thumbs + heart) * 11
    for limit in range(3, 12):
        chunks = split_text(text, limit)
        check_invariants(text, chunks, limit)
        assert all(chunk[0] in (thumbs[0], heart[0]) for chunk in chunks)


def test_flags_are_not_split_between_their_letters() -> None:
    text = FLAG_FR * 50
    chunks = split_text(text, 9)
    check_invariants(text, chunks, 9)
    assert all(len(chunk) % 2 == 0 for chunk in chunks)


def test_crlf_is_one_line_break() -> None:
    assert split_text("aaa bbb\r\nccc ddd. eee", 19)[0] == "aaa bbb\r\nccc ddd. "
    assert split_text("aaa bbb\r\n\r\nccc ddd. eee", 21)[0] == "aaa bbb\r\n\r\n"
    assert split_text("aaa\r\nbbb", 4) == ["aaa", "\r\n", "bbb"]  # never "aaa\r", "\nbbb"


def test_a_grapheme_longer_than_the_limit_is_cut() -> None:
    text = "a" + "\u0301" * 10
    chunks = split_text(text, 4)
    check_invariants(text, chunks, 4)


def test_long_whitespace_runs() -> None:
    text = "word " + " " * 9000 + " next"
    chunks = split_text(text)
    check_invariants(text, chunks, SPEECH_INPUT_LIMIT)
    assert chunks[-1].endswith("next")


def test_a_million_characters() -> None:
    text = prose(random.Random(1), 1_000_000)
    chunks = split_text(text)
    check_invariants(text, chunks, SPEECH_INPUT_LIMIT)
    assert len(chunks) < 1_000_000 / 3500


# --- properties ---------------------------------------------------------------------------------


@settings(max_examples=400)
@given(text=st.text(), limit=st.integers(min_value=1, max_value=40))
def test_any_text_joins_back_within_the_limit(text: str, limit: int) -> None:
    check_invariants(text, split_text(text, limit), limit)


TOKENS = st.sampled_from(
    [
        *(w + " " for w in WORDS[:8]),
        "I ",
        "—",
        ", ",
        ". ",
        "? ",
        '." ',
        " ",
        "\n",
        "\n\n",
        "。",
        "，",  # noqa: RUF001
        "好",
    ]
)


@settings(max_examples=300)
@given(tokens=st.lists(TOKENS, max_size=200), limit=st.integers(min_value=14, max_value=120))
def test_prose_like_text_splits_only_between_words(tokens: list[str], limit: int) -> None:
    text = "".join(tokens)
    chunks = split_text(text, limit)
    check_invariants(text, chunks, limit)
    for at in boundaries(chunks):
        # words are shorter than the limit: only a run of 好 with no punctuation is cut inside
        assert (
            not (text[at - 1].isalpha() and text[at].isalpha()) or text[at - 1 : at + 1] == "好好"
        )
    longest_run = max((len(run) for run in re.findall(r"\s+", text)), default=0)
    longest_word = max((len(word) for word in text.split()), default=0)
    if text.strip() and 2 * longest_run + longest_word <= limit:
        assert all(chunk.strip() for chunk in chunks), "whitespace-only chunk"
        assert not any(chunk[0].isspace() for chunk in chunks[1:])


@settings(max_examples=200)
@given(
    sentences=st.lists(
        st.lists(st.sampled_from(WORDS), min_size=1, max_size=12).map(" ".join),
        min_size=1,
        max_size=60,
    ),
    ends=st.lists(st.sampled_from(SENTENCE_ENDS), min_size=1, max_size=60),
    limit=st.integers(min_value=100, max_value=300),
)
def test_short_sentences_are_kept_whole(sentences: list[str], ends: list[str], limit: int) -> None:
    text = " ".join(s + ends[i % len(ends)] for i, s in enumerate(sentences))
    chunks = split_text(text, limit)
    check_invariants(text, chunks, limit)
    assert all(is_sentence_end(chunk) for chunk in chunks[:-1])


CLUSTERS = st.sampled_from(
    ["a", "b", " ", "e\u0301", "n\u0303\u0323", FAMILY, FLAG_FR, "\u2764\ufe0f", "ก\u0e33", "각"]
)


@settings(max_examples=300)
@given(clusters=st.lists(CLUSTERS, max_size=120), limit=st.integers(min_value=7, max_value=30))
def test_graphemes_are_never_split(clusters: list[str], limit: int) -> None:
    text = "".join(clusters)
    chunks = split_text(text, limit)
    check_invariants(text, chunks, limit)
    starts, at = set(), 0
    for cluster in clusters:
        starts.add(at)
        at += len(cluster)
    assert set(boundaries(chunks)) <= starts
