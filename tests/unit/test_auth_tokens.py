"""Token codec, password hashing, signing-secret handling and the in-process rate-limit counters."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from logflow.auth.errors import StartupRefused, TokenError
from logflow.auth.ratelimit import RateLimited, RateLimiter
from logflow.auth.secret import SECRET_FILE, resolve_secret_key, secret_problem
from logflow.auth.tokens import ACCESS, REFRESH, TokenCodec
from logflow.backends.cache.memory import MemoryCache
from logflow.db import passwords
from logflow.settings import Settings

SECRET = "k" * 16 + "0123456789abcdef0123456789"
# A real RSA public key (2048-bit, PEM): the "HS/RS confusion" attack signs HS256 with it as the secret.
RSA_PUBLIC_PEM = """-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo
4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u
+qKhbwKfBstIs+bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyeh
kd3qqGElvW/VDL5AaWTg0nLVkjRo9z+40RQzuVaE8AkAFmxZzow3x+VJYKdjykkJ
0iT9wCS0DRTXu269V264Vf/3jvredZiKRkgwlL9xNAwxXFg0x/XFw005UWVRIkdg
cKWTjpBP2dPwVZ4WWC+9aGVd+Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbc
mwIDAQAB
-----END PUBLIC KEY-----
"""


def codec(**kw: Any) -> TokenCodec:
    args: dict[str, Any] = {
        "issuer": "logflow",
        "audience": "logflow-api",
        "access_ttl_s": 60,
        "refresh_ttl_s": 600,
    }
    args.update(kw)
    return TokenCodec(kw.pop("secret", SECRET), "HS256", **{k: v for k, v in args.items() if k != "secret"})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def forge(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    """A JWT built by hand, as an attacker would (any header, any signing key, or none)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": "logflow",
        "aud": "logflow-api",
        "sub": "1",
        "iat": now,
        "exp": now + 60,
        "jti": "j",
        "typ": "access",
        "fam": "f",
    }
    base.update(over)
    return base


def test_round_trip_carries_every_required_claim() -> None:
    c = codec()
    token = c.access_token(7, "family-1")
    payload = jwt.decode(token, SECRET, algorithms=["HS256"], audience="logflow-api")
    assert {"exp", "iat", "iss", "aud", "sub", "jti"} <= set(payload)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    decoded = c.decode(token, ACCESS)
    assert (decoded.user_id, decoded.family) == (7, "family-1")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(forge({"alg": "none", "typ": "JWT"}, claims(), None), id="alg-none"),
        pytest.param(forge({"alg": "None", "typ": "JWT"}, claims(), None), id="alg-None"),
        pytest.param(
            forge({"alg": "RS256", "typ": "JWT"}, claims(), RSA_PUBLIC_PEM.encode()), id="rs256-with-pubkey"
        ),
        pytest.param(
            forge({"alg": "HS256", "typ": "JWT"}, claims(), RSA_PUBLIC_PEM.encode()), id="hs256-pubkey-secret"
        ),
        pytest.param(forge({"alg": "HS256", "typ": "JWT"}, claims(), b"guessed-secret"), id="wrong-secret"),
        pytest.param(
            forge({"alg": "HS256"}, claims(exp=int(time.time()) - 3600), SECRET.encode()), id="expired"
        ),
        pytest.param(forge({"alg": "HS256"}, claims(aud="other-api"), SECRET.encode()), id="wrong-aud"),
        pytest.param(forge({"alg": "HS256"}, claims(iss="evil"), SECRET.encode()), id="wrong-iss"),
        pytest.param(
            forge({"alg": "HS256"}, {k: v for k, v in claims().items() if k != "jti"}, SECRET.encode()),
            id="missing-jti",
        ),
        pytest.param(forge({"alg": "HS256"}, claims(typ="refresh"), SECRET.encode()), id="refresh-as-access"),
        pytest.param(forge({"alg": "HS256"}, claims(sub="admin"), SECRET.encode()), id="non-numeric-sub"),
        pytest.param("not.a.jwt", id="garbage"),
    ],
)
def test_attacks_are_rejected(token: str) -> None:
    with pytest.raises(TokenError):
        codec().decode(token, ACCESS)


def test_tampered_payload_is_rejected() -> None:
    token = codec().access_token(2, "fam")
    head, payload, sig = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=="))
    data["sub"] = "1"  # become user 1 (the admin), keeping the signature
    tampered = f"{head}.{b64(json.dumps(data).encode())}.{sig}"
    with pytest.raises(TokenError):
        codec().decode(tampered, ACCESS)


def test_expired_token_is_rejected_after_leeway() -> None:
    c = TokenCodec(
        SECRET, "HS256", issuer="logflow", audience="logflow-api", access_ttl_s=1, refresh_ttl_s=1, leeway_s=0
    )
    token = c.access_token(1, "f")
    time.sleep(2.1)
    with pytest.raises(TokenError, match="expired"):
        c.decode(token, ACCESS)


def test_refresh_and_access_tokens_are_not_interchangeable() -> None:
    c = codec()
    refresh, _ = c.refresh_token(1, "f", "jti-1")
    with pytest.raises(TokenError):
        c.decode(refresh, ACCESS)
    with pytest.raises(TokenError):
        c.decode(c.access_token(1, "f"), REFRESH)


# -- passwords -------------------------------------------------------------------------------------


def test_argon2id_with_owasp_parameters() -> None:
    stored = passwords.hash_password("correct horse")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.verify_password("correct horse", stored)
    assert not passwords.verify_password("wrong horse", stored)
    assert not passwords.needs_rehash(stored)
    assert not passwords.verify_password("x", "garbage") and not passwords.verify_password(
        "x", "$argon2id$bad"
    )


def test_legacy_scrypt_hashes_verify_and_need_rehash() -> None:
    salt = os.urandom(16)
    digest = hashlib.scrypt(b"old password", salt=salt, n=2**14, r=8, p=1, dklen=32)
    stored = f"scrypt${2**14}$8$1${b64(salt)}${b64(digest)}"
    assert passwords.verify_password("old password", stored)
    assert not passwords.verify_password("other", stored)
    assert passwords.needs_rehash(stored)


def test_dummy_verify_costs_like_a_real_verification() -> None:
    stored = passwords.hash_password("some password")
    passwords.dummy_verify("warm up")

    def best_of(fn: Any) -> float:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return min(times)

    real = best_of(lambda: passwords.verify_password("wrong", stored))
    dummy = best_of(lambda: passwords.dummy_verify("wrong"))
    assert 0.5 < dummy / real < 2.0, (real, dummy)


# -- signing secret --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret", ["", "secret", "your-secret-key-change-in-production", "short-but-random-1", "a" * 40]
)
def test_weak_secrets_are_recognised(secret: str) -> None:
    assert secret_problem(secret) is not None


def test_missing_secret_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = resolve_secret_key(settings)
    path = tmp_path / SECRET_FILE
    assert len(first) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resolve_secret_key(settings) == first  # persisted: tokens survive a restart
    path.chmod(0o644)
    assert resolve_secret_key(settings) == first and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_weak_secret_replaced_in_development_refused_in_production(tmp_path: Path) -> None:
    dev = Settings(data_dir=tmp_path, secret_key="changeme")
    assert resolve_secret_key(dev) != "changeme"
    with pytest.raises(StartupRefused, match="LOGFLOW_SECRET_KEY"):
        resolve_secret_key(Settings(data_dir=tmp_path, env="production", secret_key="changeme"))
    with pytest.raises(StartupRefused):
        resolve_secret_key(Settings(data_dir=tmp_path, env="production"))
    strong = "f" * 8 + "0123456789abcdef0123456789abcdef"
    assert resolve_secret_key(Settings(data_dir=tmp_path, env="production", secret_key=strong)) == strong


def test_seed_environment_names_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SECRET_KEY", "seed-secret")
    monkeypatch.setenv("ALGORITHM", "HS512")
    monkeypatch.setenv("ACCESS_TOKEN_EXPIRE_MINUTES", "15")
    settings = Settings(data_dir=tmp_path)
    assert (
        settings.secret_key.get_secret_value(),
        settings.algorithm,
        settings.access_token_expire_minutes,
    ) == ("seed-secret", "HS512", 15)
    monkeypatch.setenv("LOGFLOW_SECRET_KEY", "prefixed-wins")
    assert Settings(data_dir=tmp_path).secret_key.get_secret_value() == "prefixed-wins"
    monkeypatch.setenv("ALGORITHM", "none")
    with pytest.raises(ValueError):
        Settings(data_dir=tmp_path)


def test_public_read_and_registration_defaults_follow_env(tmp_path: Path) -> None:
    dev, prod = Settings(data_dir=tmp_path), Settings(data_dir=tmp_path, env="production")
    assert dev.effective_public_read and dev.effective_allow_registration and not dev.ingest_open
    assert not prod.effective_public_read and not prod.effective_allow_registration
    assert Settings(data_dir=tmp_path, env="production", public_read=True).effective_public_read
    assert Settings(data_dir=tmp_path, cors_origins="https://a.example, https://b.example").cors_origins == [
        "https://a.example",
        "https://b.example",
    ]


# -- in-process rate-limit counters ----------------------------------------------------------------


def test_memory_incr_window_counts_expires_and_survives_clear() -> None:
    cache = MemoryCache()
    assert [cache.incr_window("k", 1) for _ in range(3)] == [1, 2, 3]
    assert cache.incr_window("k", 1, amount=10) == 13
    assert cache.clear(None) == 0 and cache.incr_window("k", 1, 0) == 13  # clearing the cache keeps limits
    time.sleep(1.05)
    assert cache.incr_window("k", 1) == 1


def test_rate_limiter_raises_with_retry_after() -> None:
    limiter = RateLimiter(MemoryCache())
    for _ in range(3):
        limiter.hit("x", limit=3, window_s=60)
    with pytest.raises(RateLimited) as info:
        limiter.hit("x", limit=3, window_s=60)
    assert 1 <= info.value.retry_after <= 60
    limiter.hit("y", limit=0, window_s=60)  # 0 disables
