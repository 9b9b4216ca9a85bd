"""Word tokenization shared by every store, so that a query means the same everywhere.

The rules approximate Unicode UAX #29 word boundaries as Elasticsearch/OpenSearch's
``standard`` analyzer applies them, lower-cased:

* letters, digits and ``_`` run together (``user_42``, ``blk_``);
* ``. : ' ’ ·`` join two letters (``foo.bar``, ``don't``, ``ns:key``);
* ``. , ; '`` join two digits (``10.0.0.1``, ``1,024``, ``v1.2.3``);
* Han ideographs and Hiragana are one token per character;
* everything else separates tokens.

The embedded store indexes exactly these tokens; the OpenSearch store relies on the standard
analyzer, and the contract tests compare the two on real log lines.
"""

from __future__ import annotations

import re

_IDEOGRAPHIC = "\u3040-\u309f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = rf"[^\W{_IDEOGRAPHIC}]"
_LETTER = rf"[^\W\d_{_IDEOGRAPHIC}]"
_TOKEN = re.compile(
    rf"[{_IDEOGRAPHIC}]"
    rf"|{_WORD}+(?:(?:(?<={_LETTER})[.:'’·](?={_LETTER})|(?<=\d)[.,;'’](?=\d)){_WORD}+)*"
)
_HAS_ALNUM = re.compile(r"[^\W_]")

# Characters that can occur inside a token besides letters and digits. The embedded full-text
# index is told to keep them inside tokens (FTS5 ``tokenchars``).
TOKEN_INNER_CHARS = ".:',;_"


def tokenize(text: str) -> list[str]:
    """Lower-cased tokens of ``text`` in order; tokens made only of ``_`` are dropped."""
    return [t for t in _TOKEN.findall(text.lower()) if _HAS_ALNUM.search(t)]
