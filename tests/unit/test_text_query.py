"""Tokenization and query parsing: the meaning of `query` on every store."""

from __future__ import annotations

import pytest

from logflow.domain.query import parse_text_query
from logflow.domain.text import tokenize


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Connection RESET by peer", ["connection", "reset", "by", "peer"]),
        ("user_id=42 failed", ["user_id", "42", "failed"]),
        ("GET /api/v1/users?id=7", ["get", "api", "v1", "users", "id", "7"]),
        ("from 10.0.0.1:8080", ["from", "10.0.0.1", "8080"]),
        ("version v1.2.3 released.", ["version", "v1.2.3", "released"]),
        ("don't stop", ["don't", "stop"]),
        ("java.lang.NullPointerException: boom", ["java.lang.nullpointerexception", "boom"]),
        ("blk_-1608999687919862906 served", ["blk_", "1608999687919862906", "served"]),
        ("1,024 bytes; done", ["1,024", "bytes", "done"]),
        ("mail@example.com", ["mail", "example.com"]),
        ("日本語 ok", ["日", "本", "語", "ok"]),
        ("___ -- !!", []),
    ],
)
def test_tokenize(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


def test_query_terms_and_phrases() -> None:
    q = parse_text_query('Error "connection reset" timeout')
    assert q is not None
    assert q.terms == ("error", "timeout")
    assert q.phrases == (("connection", "reset"),)


def test_single_word_phrase_is_a_term_and_empty_query_is_none() -> None:
    q = parse_text_query('"timeout"')
    assert q is not None and q.terms == ("timeout",) and not q.phrases
    assert parse_text_query("  !! ") is None
    assert parse_text_query(None) is None


def test_unbalanced_quote_is_not_an_error() -> None:
    q = parse_text_query('disk "full')
    assert q is not None and q.terms == ("disk", "full")
