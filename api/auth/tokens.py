"""JWT bearer tokens: HS256 with a shared secret, or RS256/ES256 against a JWKS (OIDC providers).

Verification uses joserfc, the JOSE library of the Authlib project (Authlib 1.7+ deprecated its
own `authlib.jose` in its favour). The algorithm list is fixed per key type, so `alg: none` and
HS256-signed-with-the-public-key confusion are refused before any signature check.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OctKey

from api.auth.jwks import JwksSource
from domain.errors import Unauthenticated

SYMMETRIC = ("HS256",)
ASYMMETRIC = ("RS256", "ES256")
# Tokens already verified are remembered, by their whole text (signature included), for at most
# this long and never past their own expiry: a client sends the same token on every request, and
# decoding and checking it again was a few percent of a cached search's CPU. A JWKS key withdrawn
# by the issuer stops verifying new tokens at once, ones already seen within this window.
VERIFIED_TTL_S = 30.0
VERIFIED_TOKENS = 4096


@dataclass(frozen=True)
class JwtConfig:
    secret: str | None
    issuer: str | None
    audience: str | None
    leeway_s: int = 30
    tenant_claim: str = "tenant"
    roles_claim: str = "roles"
    subject_claim: str = "sub"


@dataclass(frozen=True)
class VerifiedToken:
    subject: str
    tenant: str
    roles: list[str]
    expires_at: float | None


class JwtVerifier:
    def __init__(self, config: JwtConfig, jwks: JwksSource | None = None) -> None:
        self.config = config
        self.jwks = jwks
        self._secret = OctKey.import_key(config.secret) if config.secret else None
        self._verified: OrderedDict[str, tuple[float, VerifiedToken]] = OrderedDict()

    async def verify(self, token: str) -> VerifiedToken:
        now = time.time()
        seen = self._verified.get(token)
        if seen is not None and now < seen[0]:
            return seen[1]
        verified = await self._verify(token)
        # Good until the claims' own check would refuse it (exp plus the leeway), at the latest.
        until = now + VERIFIED_TTL_S
        if verified.expires_at is not None:
            until = min(until, verified.expires_at + self.config.leeway_s)
        self._verified[token] = (until, verified)
        self._verified.move_to_end(token)
        while len(self._verified) > VERIFIED_TOKENS:
            self._verified.popitem(last=False)
        return verified

    async def _verify(self, token: str) -> VerifiedToken:
        alg = _unverified_alg(token)
        if alg in SYMMETRIC and self._secret is not None:
            claims = self._decode(token, self._secret, SYMMETRIC)
        elif alg in ASYMMETRIC and self.jwks is not None:
            keys = await self.jwks.keys_for(_unverified_kid(token))
            claims = self._decode(token, keys, ASYMMETRIC)
        else:
            allowed = [*(SYMMETRIC if self._secret else ()), *(ASYMMETRIC if self.jwks else ())]
            raise Unauthenticated(f"token algorithm {alg!r} is not accepted here; accepted: {allowed}")
        self._check_claims(claims)
        return self._to_verified(claims)

    def _decode(self, token: str, key: OctKey | KeySet, algorithms: tuple[str, ...]) -> dict[str, Any]:
        try:
            return dict(jwt.decode(token, key, algorithms=list(algorithms)).claims)
        except (JoseError, ValueError) as exc:
            raise Unauthenticated("token signature does not verify; get a new token from your issuer") from exc

    def _check_claims(self, claims: dict[str, Any]) -> None:
        c = self.config
        options: dict[str, Any] = {"exp": {"essential": True}}
        if c.issuer:
            options["iss"] = {"essential": True, "value": c.issuer}
        if c.audience:
            options["aud"] = {"essential": True, "value": c.audience}
        try:
            jwt.JWTClaimsRegistry(leeway=c.leeway_s, **options).validate(claims)
        except JoseError as exc:
            raise Unauthenticated(f"token rejected: {_describe(exc)}") from exc

    def _to_verified(self, claims: dict[str, Any]) -> VerifiedToken:
        c = self.config
        subject, tenant = claims.get(c.subject_claim), claims.get(c.tenant_claim)
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated(f"token has no {c.subject_claim!r} claim")
        if not isinstance(tenant, str) or not tenant:
            raise Unauthenticated(f"token has no {c.tenant_claim!r} claim naming the tenant")
        raw_roles = claims.get(c.roles_claim, [])
        roles = raw_roles.split() if isinstance(raw_roles, str) else raw_roles
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise Unauthenticated(f"token claim {c.roles_claim!r} must be a list of role names")
        exp = claims.get("exp")
        return VerifiedToken(subject, tenant, [r.lower() for r in roles], float(exp) if exp is not None else None)

    def issue(self, *, subject: str, tenant: str, roles: list[str], ttl_s: int = 3600, now: float | None = None) -> str:
        """An HS256 token with this verifier's secret, issuer and audience (for `ragql dev-token`)."""
        if self._secret is None:
            raise ValueError("issuing tokens needs RAGQL_JWT_SECRET")
        c = self.config
        issued = int(now if now is not None else time.time())
        claims: dict[str, Any] = {
            c.subject_claim: subject,
            c.tenant_claim: tenant,
            c.roles_claim: roles,
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl_s,
        }
        if c.issuer:
            claims["iss"] = c.issuer
        if c.audience:
            claims["aud"] = c.audience
        return jwt.encode({"alg": "HS256", "typ": "JWT"}, claims, self._secret, algorithms=list(SYMMETRIC))


def _header(token: str) -> dict[str, Any]:
    from joserfc.jws import extract_compact

    try:
        return dict(extract_compact(token.encode()).protected)
    except (JoseError, ValueError, UnicodeError) as exc:
        raise Unauthenticated("malformed token: expected a compact JWT (header.payload.signature)") from exc


def _unverified_alg(token: str) -> str:
    return str(_header(token).get("alg", ""))


def _unverified_kid(token: str) -> str | None:
    kid = _header(token).get("kid")
    return str(kid) if kid is not None else None


def _describe(exc: JoseError) -> str:
    # joserfc's messages name the claim ("invalid_claim: Invalid claim: 'aud'"); keep them.
    return str(exc.description or exc.error)
