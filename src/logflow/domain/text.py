"""Word tokenization shared by every store, so that a query means the same everywhere.

The rules are those of Elasticsearch/OpenSearch's ``standard`` analyzer (Lucene's
StandardTokenizer: Unicode UAX #29 word boundaries, then lower-casing), so the embedded store
indexes exactly the tokens OpenSearch would. In short:

* letters, digits and connectors such as ``_`` run together (``user_42``, ``blk_``);
* ``. : ' ’ ·`` join two letters (``foo.bar``, ``don't``, ``ns:key``);
* ``. , ; '`` join two digits (``10.0.0.1``, ``1,024``, ``v1.2.3``);
* combining marks and format characters stay with the character before them;
* Han ideographs and Hiragana are one token per character, Katakana runs are one token,
  Thai/Lao/Khmer/Myanmar runs are one token, emoji (and emoji sequences) are tokens;
* everything else (punctuation, symbols, ``²`` or ``½``) separates tokens;
* a token longer than 255 UTF-16 units is cut, as Lucene cuts it.

Lower-casing is per character, like Java's ``Character.toLowerCase`` (so ``Σ`` is always ``σ``
and ``İ`` is ``i``). ``tests/contracts/test_tokenizer_vs_opensearch.py`` compares this module
with a real OpenSearch on Loghub lines from 12 systems.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from functools import cache
from itertools import accumulate, chain

# Characters that can occur inside a token besides letters and digits. The embedded full-text
# index is told to keep them inside tokens (FTS5 ``tokenchars``); non-ASCII characters are
# always token characters there.
TOKEN_INNER_CHARS = ".:',;_"

_MAX_TOKEN_UTF16 = 255  # Lucene's default max_token_length

# Pure-ASCII text (nearly every log line) takes this small pattern; on ASCII it accepts exactly
# what the full pattern below accepts, and it is several times faster.
_ASCII_TOKEN = re.compile(
    r"[a-z0-9_]+(?:(?:(?<=[a-z])[.:'](?=[a-z])|(?<=[0-9])[.,;'](?=[0-9]))[a-z0-9_]+)*"
)

# Runs of underscores match too, but are no tokens (Lucene needs a letter or digit).
_ASCII_PATTERNS = (_ASCII_TOKEN, re.compile("_+"))

Ranges = tuple[tuple[int, int], ...]

# Word_Break / script classes Python's unicodedata cannot tell (it knows categories only).
_HAN: Ranges = (
    (0x2E80, 0x2E99), (0x2E9B, 0x2EF3), (0x2F00, 0x2FD5), (0x3005, 0x3005), (0x3007, 0x3007),
    (0x3021, 0x3029), (0x3038, 0x303B), (0x3400, 0x4DB5), (0x4E00, 0x9FEF), (0xF900, 0xFA6D),
    (0xFA70, 0xFAD9), (0x20000, 0x2A6D6), (0x2A700, 0x2B734), (0x2B740, 0x2B81D),
    (0x2B820, 0x2CEA1), (0x2CEB0, 0x2EBE0), (0x2F800, 0x2FA1D),
)
_HIRAGANA: Ranges = (
    (0x3041, 0x3096), (0x309D, 0x309F), (0x1B001, 0x1B11E), (0x1B150, 0x1B152), (0x1F200, 0x1F200),
)
_KATAKANA: Ranges = (
    (0x3031, 0x3035), (0x309B, 0x309C), (0x30A0, 0x30FA), (0x30FC, 0x30FF), (0x31F0, 0x31FF),
    (0x32D0, 0x32FE), (0x3300, 0x3357), (0xFF66, 0xFF9D), (0x1B000, 0x1B000), (0x1B164, 0x1B167),
)
_HEBREW: Ranges = (
    (0x05D0, 0x05EA), (0x05EF, 0x05F2), (0xFB1D, 0xFB1D), (0xFB1F, 0xFB28), (0xFB2A, 0xFB36),
    (0xFB38, 0xFB3C), (0xFB3E, 0xFB3E), (0xFB40, 0xFB41), (0xFB43, 0xFB44), (0xFB46, 0xFB4F),
)
# Blocks of the Line_Break=Complex_Context scripts (Thai, Lao, Myanmar, Khmer, Tai ...): every
# character in them but digits and the few listed in _NOT_SOUTHEAST_ASIAN runs together.
_SOUTHEAST_ASIAN: Ranges = (
    (0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1780, 0x17FF), (0x1950, 0x19DF), (0x1A20, 0x1AAF),
    (0xA9E0, 0xA9FF), (0xAA60, 0xAADF), (0x11700, 0x1174F),
)
_NOT_SOUTHEAST_ASIAN = frozenset({
    0x0E3F, 0x0E4F, 0x0E5A, 0x0E5B, *range(0x104A, 0x1050), 0x17D4, 0x17D5, 0x17D6, *range(0x17D8, 0x17DC),
    *range(0x17F0, 0x17FA), 0x1A7F, 0x1173C, 0x1173D, 0x1173E,
})
# Ideographs outside the Han script (Tangut, Khitan, Nushu): no token at all, as in Lucene.
_OTHER_IDEOGRAPHS: Ranges = ((0x3006, 0x3006), (0x17000, 0x18D08), (0x1B170, 0x1B2FB))
# Symbols and marks that UAX #29 counts as letters (Other_Alphabetic or listed explicitly).
_LETTER_EXTRAS: Ranges = (
    (0x02C2, 0x02C5), (0x02D2, 0x02D7), (0x02DE, 0x02DF), (0x02ED, 0x02ED), (0x02EF, 0x02FF),
    (0x055B, 0x055C), (0x055E, 0x055E), (0x05F3, 0x05F3), (0xA720, 0xA721), (0xA789, 0xA78A),
    (0xAB5B, 0xAB5B), (0x24B6, 0x24E9), (0x1F130, 0x1F149), (0x1F150, 0x1F169), (0x1F170, 0x1F189),
)
# Characters assigned in Unicode 13.0-14.0 (Python 3.11's tables). Lucene 9's tokenizer is built
# from Unicode 12.1 and treats them as unknown, that is as separators, so we do too. (On a newer
# Python, characters from later versions behave as letters here and as separators in OpenSearch.)
_NEWER_THAN_LUCENE: Ranges = (
    (0x0870, 0x0887), (0x0889, 0x088E), (0x0890, 0x0891), (0x0898, 0x089F), (0x08B5, 0x08B5),
    (0x08BE, 0x08D2), (0x0B55, 0x0B55), (0x0C3C, 0x0C3C), (0x0C5D, 0x0C5D), (0x0CDD, 0x0CDD),
    (0x0D04, 0x0D04), (0x0D81, 0x0D81), (0x170D, 0x170D), (0x1715, 0x1715), (0x171F, 0x171F),
    (0x180F, 0x180F), (0x1ABF, 0x1ACE), (0x1B4C, 0x1B4C), (0x1DFA, 0x1DFA), (0x2C2F, 0x2C2F),
    (0x2C5F, 0x2C5F), (0x31BB, 0x31BF), (0x4DB6, 0x4DBF), (0x9FF0, 0x9FFF), (0xA7C0, 0xA7C1),
    (0xA7C7, 0xA7CA), (0xA7D0, 0xA7D1), (0xA7D3, 0xA7D3), (0xA7D5, 0xA7D9), (0xA7F2, 0xA7F6),
    (0xA82C, 0xA82C), (0xAB68, 0xAB69), (0x10570, 0x1057A), (0x1057C, 0x1058A), (0x1058C, 0x10592),
    (0x10594, 0x10595), (0x10597, 0x105A1), (0x105A3, 0x105B1), (0x105B3, 0x105B9), (0x105BB, 0x105BC),
    (0x10780, 0x10785), (0x10787, 0x107B0), (0x107B2, 0x107BA), (0x10E80, 0x10EA9), (0x10EAB, 0x10EAC),
    (0x10EB0, 0x10EB1), (0x10F70, 0x10F85), (0x10FB0, 0x10FC4), (0x11070, 0x11075), (0x110C2, 0x110C2),
    (0x11147, 0x11147), (0x111CE, 0x111CF), (0x11460, 0x11461), (0x11740, 0x11746), (0x11900, 0x11906),
    (0x11909, 0x11909), (0x1190C, 0x11913), (0x11915, 0x11916), (0x11918, 0x11935), (0x11937, 0x11938),
    (0x1193B, 0x11943), (0x11950, 0x11959), (0x11AB0, 0x11ABF), (0x11FB0, 0x11FB0), (0x12F90, 0x12FF0),
    (0x16A70, 0x16ABE), (0x16AC0, 0x16AC9), (0x16FE4, 0x16FE4), (0x16FF0, 0x16FF1), (0x1AFF0, 0x1AFFE),
    (0x1B11F, 0x1B122), (0x1CF00, 0x1CF2D), (0x1CF30, 0x1CF46), (0x1DF00, 0x1DF1E), (0x1E290, 0x1E2AE),
    (0x1E7E0, 0x1E7E6), (0x1E7E8, 0x1E7EB), (0x1E7ED, 0x1E7EE), (0x1E7F0, 0x1E7FE), (0x1FBF0, 0x1FBF9),
)
_EXTEND_EXTRAS: Ranges = ((0x200C, 0x200D), (0xFF9E, 0xFF9F), (0x1F3FB, 0x1F3FF), (0xE0020, 0xE007F))
_NOT_FORMAT = frozenset({0x200B})  # ZERO WIDTH SPACE separates words
_MARKS = frozenset({"Mn", "Me", "Mc"})
_LETTERS = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Nl"})
_MID_LETTER = ":\u00b7\u0387\u05f4\u2027\ufe13\ufe55\uff1a"
_MID_NUM = ",;\u037e\u0589\u060c\u060d\u066c\u07f8\u2044\ufe10\ufe14\ufe50\ufe54\uff0c\uff1b"
_MID_NUM_LET = ".\u2018\u2019\u2024\ufe52\uff07\uff0e"
# ExtendNumLet: connector punctuation (``_`` ``‿`` ...) and NARROW NO-BREAK SPACE.
_EXTEND_NUM_LET: Ranges = (
    (0x005F, 0x005F), (0x202F, 0x202F), (0x203F, 0x2040), (0x2054, 0x2054), (0xFE33, 0xFE34),
    (0xFE4D, 0xFE4F), (0xFF3F, 0xFF3F),
)
# Other characters that can start a token: keycap bases, ZWJ (emoji sequences), skin-tone
# modifiers and regional indicators.
_OTHER_STARTS: Ranges = ((0x23, 0x23), (0x2A, 0x2A), (0x200D, 0x200D), (0x1F3FB, 0x1F3FF), (0x1F1E6, 0x1F1FF))
# First characters of the runs the patterns match only to skip them.
_SKIP_FIRST = frozenset("\u200d" + "".join(chr(cp) for lo, hi in _EXTEND_NUM_LET for cp in range(lo, hi + 1)))
_EMOJI_MODIFIER: Ranges = ((0x1F3FB, 0x1F3FF),)
_REGIONAL_INDICATOR: Ranges = ((0x1F1E6, 0x1F1FF),)
# Extended_Pictographic (emoji-data.txt as Lucene has it: 1FB00-1FBFF included).
_EMOJI: Ranges = (
    (0x00A9, 0x00A9), (0x00AE, 0x00AE), (0x203C, 0x203C), (0x2049, 0x2049), (0x2122, 0x2122),
    (0x2139, 0x2139), (0x2194, 0x2199), (0x21A9, 0x21AA), (0x231A, 0x231B), (0x2328, 0x2328),
    (0x2388, 0x2388), (0x23CF, 0x23CF), (0x23E9, 0x23F3), (0x23F8, 0x23FA), (0x24C2, 0x24C2),
    (0x25AA, 0x25AB), (0x25B6, 0x25B6), (0x25C0, 0x25C0), (0x25FB, 0x25FE), (0x2600, 0x2605),
    (0x2607, 0x2612), (0x2614, 0x2685), (0x2690, 0x2705), (0x2708, 0x2712), (0x2714, 0x2714),
    (0x2716, 0x2716), (0x271D, 0x271D), (0x2721, 0x2721), (0x2728, 0x2728), (0x2733, 0x2734),
    (0x2744, 0x2744), (0x2747, 0x2747), (0x274C, 0x274C), (0x274E, 0x274E), (0x2753, 0x2755),
    (0x2757, 0x2757), (0x2763, 0x2767), (0x2795, 0x2797), (0x27A1, 0x27A1), (0x27B0, 0x27B0),
    (0x27BF, 0x27BF), (0x2934, 0x2935), (0x2B05, 0x2B07), (0x2B1B, 0x2B1C), (0x2B50, 0x2B50),
    (0x2B55, 0x2B55), (0x3030, 0x3030), (0x303D, 0x303D), (0x3297, 0x3297), (0x3299, 0x3299),
    (0x1F000, 0x1F0FF), (0x1F10D, 0x1F10F), (0x1F12F, 0x1F12F), (0x1F16C, 0x1F171), (0x1F17E, 0x1F17F),
    (0x1F18E, 0x1F18E), (0x1F191, 0x1F19A), (0x1F1AD, 0x1F1E5), (0x1F201, 0x1F20F), (0x1F21A, 0x1F21A),
    (0x1F22F, 0x1F22F), (0x1F232, 0x1F23A), (0x1F23C, 0x1F23F), (0x1F249, 0x1F3FA), (0x1F400, 0x1F53D),
    (0x1F546, 0x1F64F), (0x1F680, 0x1F6FF), (0x1F774, 0x1F77F), (0x1F7D5, 0x1F7FF), (0x1F80C, 0x1F80F),
    (0x1F848, 0x1F84F), (0x1F85A, 0x1F85F), (0x1F888, 0x1F88F), (0x1F8AE, 0x1F8FF), (0x1F90C, 0x1F93A),
    (0x1F93C, 0x1F945), (0x1F947, 0x1FAFF), (0x1FB00, 0x1FBFF), (0x1FC00, 0x1FFFD),
)


def _marks(*tables: Ranges) -> bytearray:
    """A lookup table over planes 0-1: nonzero where a code point is in one of ``tables``."""
    marks = bytearray(0x20000)
    for ranges in tables:
        for lo, hi in ranges:
            if lo < 0x20000:
                marks[lo : min(hi, 0x1FFFF) + 1] = b"\x01" * (min(hi, 0x1FFFF) + 1 - lo)
    return marks


def _to_ranges(cps: list[int]) -> Ranges:
    """Sorted code points as (first, last) ranges."""
    ranges: list[tuple[int, int]] = []
    for cp in cps:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    return tuple(ranges)


def _body(ranges: Ranges) -> str:
    return "".join(re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}"
                   for lo, hi in ranges)


def _atom(*tables: Ranges) -> str:
    """A regex matching one character of ``tables``.

    Python's regex engine tests a class holding only BMP characters with one bitmap lookup, but a
    class with astral ranges by scanning all its ranges; the astral part is therefore a separate
    alternative behind a cheap guard (several times faster on non-ASCII text).
    """
    ranges = [r for table in tables for r in table]
    bmp = tuple((lo, min(hi, 0xFFFF)) for lo, hi in ranges if lo <= 0xFFFF)
    astral = tuple((max(lo, 0x10000), hi) for lo, hi in ranges if hi > 0xFFFF)
    parts = [f"[{_body(bmp)}]"] if bmp else []
    if astral:
        parts.append(f"(?=[\U00010000-\U0010ffff])[{_body(astral)}]")
    return parts[0] if len(parts) == 1 else f"(?:{'|'.join(parts)})"


def _classes() -> dict[str, Ranges]:
    """Character classes by Word_Break property, derived from Unicode categories plus the tables above."""
    extend: list[int] = []
    letter: list[int] = []
    southeast: list[int] = []
    number: list[int] = [0x066B]  # ARABIC DECIMAL SEPARATOR counts as a digit
    newer = _marks(_NEWER_THAN_LUCENE)
    extend_extra = _marks(_EXTEND_EXTRAS)
    letter_extra = _marks(_LETTER_EXTRAS)
    southeast_range = _marks(_SOUTHEAST_ASIAN)
    other_script = _marks(_HAN, _HIRAGANA, _KATAKANA, _HEBREW, _OTHER_IDEOGRAPHS)
    other_script[0x3005] = other_script[0x303B] = 0  # 々 and 〻 are letters that are also Han
    category = unicodedata.category
    # Planes 2-3 hold only Han ideographs (covered by _HAN) and plane 14 only tags and selectors.
    for cp in chain(range(0x20000), range(0xE0000, 0xE0200)):
        cat = category(chr(cp))
        in_low_planes = cp < 0x20000
        if in_low_planes and newer[cp]:
            continue
        in_southeast = in_low_planes and southeast_range[cp]
        is_letter = in_low_planes and (cat in _LETTERS or letter_extra[cp])
        if in_southeast and cat not in ("Nd", "Cn") and cp not in _NOT_SOUTHEAST_ASIAN:
            southeast.append(cp)
        if cat in _MARKS or (cat == "Cf" and cp not in _NOT_FORMAT) or (in_low_planes and extend_extra[cp]):
            extend.append(cp)
        elif cat == "Nd":
            number.append(cp)
        elif is_letter and not (in_southeast or other_script[cp]):
            letter.append(cp)
    return {
        "extend": _to_ranges(extend),
        # Emoji sequences treat ZWJ and the presentation selectors FE0E/FE0F themselves.
        "emoji_extend": _to_ranges([cp for cp in extend if cp not in (0x200D, 0xFE0E, 0xFE0F)]),
        "letter": _to_ranges(letter),
        "southeast": _to_ranges(southeast),
        "number": _to_ranges(sorted(number)),
    }


@cache
def _unicode_patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """The full tokenizer (Lucene's StandardTokenizer grammar as one regular expression) and the
    pattern of the connector or ZWJ runs it matches only to skip them.

    Built on first use (about 0.1 s) so that importing this module stays cheap. Alternatives are
    ordered so that Python's first-match choice gives the same token as JFlex's longest match.
    Each "piece" is a run of one kind of character with the marks that attach to it (UAX #29
    rule WB4), matched with one class test per character.
    """
    c = _classes()
    ext = _atom(c["extend"])
    fe = f"{ext}*"
    hebrew = _atom(_HEBREW)
    letter = _atom(c["letter"], _HEBREW)
    number = _atom(c["number"])
    katakana = _atom(_KATAKANA)
    connector = _atom(_EXTEND_NUM_LET)
    # A Hebrew letter keeps a following apostrophe (WB7a); marks between them are rare in logs,
    # so look back over at most two.
    after_hebrew = f"(?:(?<={hebrew})|(?<={hebrew}{ext})|(?<={hebrew}{ext}{ext}))"
    letters = f"{letter}{_atom(c['letter'], _HEBREW, c['extend'])}*(?:{after_hebrew}'{fe})?"
    numbers = f"{number}{_atom(c['number'], c['extend'])}*"
    katakanas = f"{katakana}{_atom(_KATAKANA, c['extend'])}*"
    connectors = f"{connector}{_atom(_EXTEND_NUM_LET, c['extend'])}*"
    mid_letter = f"[{_MID_LETTER}{_MID_NUM_LET}']{fe}"
    mid_num = f"[{_MID_NUM}{_MID_NUM_LET}']{fe}"
    # (?<!') : after a Hebrew letter's apostrophe Lucene starts a new part, which cannot begin
    # with a mid-letter character ("א'.ב" is two tokens).
    letters_numbers = (
        f"(?:{letters}(?:(?:{connectors})?{letters}|(?<!'){mid_letter}{letters})*"
        f"|{numbers}(?:(?:{connectors})?{numbers}|{mid_num}{numbers})*)+"
    )
    unit = f"(?:{katakanas}(?:(?:{connectors})?{katakanas})*|{letters_numbers})"
    word = f"(?:{connectors})?{unit}(?:{connectors}{unit})*(?:{connectors})?"

    emoji_ext = _atom(c["emoji_extend"])
    pict = _atom(_EMOJI)
    # A ZWJ belongs to the next emoji of a ZWJ sequence when one follows, else to this one. A lone
    # skin-tone modifier is an emoji too, but takes neither a leading ZWJ nor a trailing FE0F.
    emoji_tail = f"(?:{emoji_ext}|\u200d(?!\u200d*{pict}))*"
    element = f"(?:\u200d*{pict}{emoji_tail}\ufe0f?|{_atom(_EMOJI_MODIFIER)}{emoji_tail})"
    regional = _atom(_REGIONAL_INDICATOR)
    emoji = (
        f"{element}(?:\u200d{element})*"
        f"|[0-9#*](?:{emoji_ext}|\u200d)*\ufe0f?\u20e3(?:{emoji_ext}|\u200d)*"
        f"|{regional}{fe}{regional}{fe}"
    )
    southeast = f"{_atom(c['southeast'])}{_atom(c['southeast'], c['extend'])}*"
    single = f"{_atom(_HAN, _HIRAGANA)}{fe}"
    # The last alternative swallows runs of connectors or of ZWJs that start no token (the caller
    # drops them): without it such a run would be re-scanned from each of its positions, which
    # takes quadratic time. (Lucene would still emit a skin-tone modifier or a Thai mark inside
    # a connector run as a token of its own; we drop it. Nobody writes "_🏽" in a log.)
    skip = f"{connectors}|\u200d+"
    # One class test rejects the many positions where no token can start (spaces, punctuation)
    # before the alternatives are tried one by one.
    starts = _atom(c["letter"], c["number"], c["southeast"], _HEBREW, _KATAKANA, _HAN, _HIRAGANA, _EMOJI,
                   _EXTEND_NUM_LET, _OTHER_STARTS)
    return re.compile(f"(?={starts})(?:{word}|{emoji}|{southeast}|{single}|{skip})"), re.compile(skip)


def _java_lower(text: str) -> str:
    # str.lower() is context-sensitive for Σ (word-final ς) and maps İ to two characters; Lucene
    # lower-cases each character on its own.
    return text.replace("\u0130", "i").replace("\u03a3", "\u03c3").lower()


def _utf16_len(token: str) -> int:
    return len(token) + sum(1 for ch in token if ord(ch) > 0xFFFF)


def _cut(pattern: re.Pattern[str], skipped: re.Pattern[str], text: str, start: int, end: int) -> list[str]:
    """Tokens of an over-long match: Lucene's scanner sees at most 255 UTF-16 units, so it emits
    the longest token that fits and resumes right after it. Each step looks at one window only,
    which keeps this linear in the length of the match."""
    # units[i] = UTF-16 length of text[start : start + i]; a window may span at most 255 of them.
    units = list(accumulate((2 if ord(ch) > 0xFFFF else 1 for ch in text[start:end]), initial=0))
    tokens: list[str] = []
    pos = start
    while pos < end:
        window_end = start + bisect_right(units, units[pos - start] + _MAX_TOKEN_UTF16) - 1
        match = pattern.match(text, pos, min(window_end, end))
        if match is None or match.end() == pos:
            pos += 1
            continue
        token = match.group()
        if token[0] not in _SKIP_FIRST or not skipped.fullmatch(token):
            tokens.append(token)
        pos = match.end()
    return tokens


def tokenize(text: str) -> list[str]:
    """Lower-cased tokens of ``text`` in order (what OpenSearch's standard analyzer emits)."""
    ascii_only = text.isascii()
    # Most log lines are ASCII: plain lower() is Java's there, and only "_" can start a skipped run.
    lowered = text.lower() if ascii_only else _java_lower(text)
    pattern, skipped = _ASCII_PATTERNS if ascii_only else _unicode_patterns()
    tokens: list[str] = pattern.findall(lowered)
    # max(map(len)) runs in C; a generator here cost ~1 µs for each line longer than 127 characters.
    if len(lowered) > _MAX_TOKEN_UTF16 // 2 and max(map(len, tokens), default=0) > _MAX_TOKEN_UTF16 // 2:
        return _tokenize_long(pattern, skipped, lowered)
    if ascii_only and "_" not in lowered:
        return tokens
    return [t for t in tokens if t[0] not in _SKIP_FIRST or not skipped.fullmatch(t)]


def _tokenize_long(pattern: re.Pattern[str], skipped: re.Pattern[str], lowered: str) -> list[str]:
    """The slow path for text holding a token that may exceed Lucene's length limit."""
    tokens: list[str] = []
    for match in pattern.finditer(lowered):
        token = match.group()
        if _utf16_len(token) > _MAX_TOKEN_UTF16:
            tokens += _cut(pattern, skipped, lowered, match.start(), match.end())
        elif token[0] not in _SKIP_FIRST or not skipped.fullmatch(token):
            tokens.append(token)
    return tokens
