"""Verified JWTs are remembered by their whole text, never past their expiry (api/auth/tokens.py)."""

from __future__ import annotations

import time

import pytest

from api.auth import tokens
from api.auth.tokens import JwtConfig, JwtVerifier
from domain.errors import Unauthenticated

SECRET = "s" * 48


def _verifier() -> JwtVerifier:
    return JwtVerifier(JwtConfig(secret=SECRET, issuer=None, audience=None, leeway_s=30))


async def test_a_token_seen_is_not_decoded_again_within_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = _verifier()
    token = verifier.issue(subject="u", tenant="acme", roles=["reader"])
    first = await verifier.verify(token)
    monkeypatch.setattr(verifier, "_verify", None)  # any second decode would fail here
    assert await verifier.verify(token) == first


async def test_a_remembered_token_is_refused_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = _verifier()
    now = time.time()
    token = verifier.issue(subject="u", tenant="acme", roles=["reader"], ttl_s=5, now=now)
    await verifier.verify(token)
    # Past exp and the leeway, though well inside the remembering window.
    monkeypatch.setattr(tokens.time, "time", lambda: now + 5 + 31)
    with pytest.raises(Unauthenticated):
        await verifier.verify(token)


async def test_a_tampered_token_is_not_taken_for_a_remembered_one() -> None:
    verifier = _verifier()
    token = verifier.issue(subject="u", tenant="acme", roles=["reader"])
    await verifier.verify(token)
    head, payload, signature = token.split(".")
    forged = ".".join([head, payload, signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")])
    with pytest.raises(Unauthenticated):
        await verifier.verify(forged)


async def test_the_window_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "VERIFIED_TOKENS", 2)
    verifier = _verifier()
    for subject in ("a", "b", "c"):
        await verifier.verify(verifier.issue(subject=subject, tenant="acme", roles=[]))
    assert len(verifier._verified) == 2
