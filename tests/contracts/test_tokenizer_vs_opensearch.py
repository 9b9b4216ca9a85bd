"""``logflow.domain.text.tokenize`` against the ``standard`` analyzer of a real OpenSearch.

The embedded store indexes ``tokenize``'s tokens and the OpenSearch store lets the engine analyze
the message, so a query can only mean the same on both if the two tokenizations agree. Checked
on Loghub lines of all 12 systems, and on strings that exercise the Unicode rules logs rarely
reach (emoji, CJK, Thai, combining marks, case mapping, the 255-character token limit).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import httpx
import pytest

from logflow.backends.store.opensearch.client import parse_store_url
from logflow.domain.text import tokenize
from tests.conftest import LOGHUB_SYSTEMS, loghub_rows, require_engine

pytestmark = pytest.mark.distributed

SAMPLE_PER_SYSTEM = 150

UNICODE_CASES = [
    "Benutzer «Müller» hat Größe 1.024 KB — ok",
    "ΑΣ ΟΔΟΣ İstanbul ǅemal ﬁle ẞ",  # Java lower-cases per character: σ, i, ǆ
    "日本語のログ メッセージ ｶﾞｲﾄﾞ カ_a a_カ 々a",  # Han/Hiragana per character, Katakana runs
    "ไทย๑๒ ພາສາລາວ ខ្មែរ မြန်မာ",  # Southeast Asian runs; their digits apart
    "한국어 로그 ㄱㄴ",
    "e\u0301te\u0301 x\u00adx a\u2060b a\u200bb",  # marks and format characters attach; ZWSP splits
    "deploy ✅ done 👍🏽 family 👨\u200d👩\u200d👧 flag 🇫🇷 keycap #\ufe0f\u20e3 © 2024 ™",
    "x² ½ ① Ⅻ Ⓜ 🄰",  # No-category numbers separate; Nl and Other_Alphabetic are letters
    "١٬٢٣٤ ١٫٥ ۱۲ ١,٢",  # Arabic-Indic digits with their separators
    "a\u202fb ‿x x‿ __init__ ___",
    "don’t l'été a·b 1'000 x:y:z 1:2 a.1 1.a",
    "a" * 300 + " " + "1" * 600 + " " + "é" * 260,  # the 255-unit token limit
    "😀" * 200,
]


@pytest.fixture(scope="module")
def analyze() -> Iterator[httpx.Client]:
    endpoint = parse_store_url(require_engine("opensearch"))
    with httpx.Client(base_url=endpoint.base_url, auth=endpoint.auth, timeout=30) as client:
        yield client


def standard_tokens(client: httpx.Client, text: str) -> list[str]:
    # One request per text: tokens of several texts come back in one list, with positions and
    # offsets that would have to be split apart again.
    response = client.post("/_analyze", json={"analyzer": "standard", "text": text})
    response.raise_for_status()
    return [token["token"] for token in response.json()["tokens"]]


@pytest.mark.parametrize("system", LOGHUB_SYSTEMS)
def test_loghub_lines_tokenize_like_the_standard_analyzer(analyze: httpx.Client, system: str) -> None:
    rows = loghub_rows(system)
    lines = [row["Content"] for row in random.Random(system).sample(rows, min(SAMPLE_PER_SYSTEM, len(rows)))]
    differing = {line: (tokenize(line), expected) for line in lines
                 if tokenize(line) != (expected := standard_tokens(analyze, line))}
    assert not differing


@pytest.mark.parametrize("text", UNICODE_CASES, ids=range(len(UNICODE_CASES)))
def test_unicode_rules_tokenize_like_the_standard_analyzer(analyze: httpx.Client, text: str) -> None:
    assert tokenize(text) == standard_tokens(analyze, text)
