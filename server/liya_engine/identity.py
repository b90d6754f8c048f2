"""Who is calling: verification of the bearer JWT into an ``Identity``.

Algorithms come from settings, never from the token; ``exp`` is required;
``iss``/``aud`` are checked when configured. The verification key is parsed
once, when the verifier is built.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization

from liya_engine.errors import InvalidToken
from liya_engine.settings import Settings, SettingsError

VERIFIED_CACHE_SIZE = 10_000
TENANT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


@dataclass(frozen=True, slots=True)
class Identity:
    """The verified caller: the tenant it acts for and the actor (JWT ``sub``)."""

    tenant_id: str
    actor: str


class TokenVerifier:
    """Verifies ``authorization`` metadata values into an ``Identity``."""

    def __init__(self, settings: Settings) -> None:
        if settings.jwt_public_key_pem:
            try:
                self._key: object = serialization.load_pem_public_key(
                    settings.jwt_public_key_pem.encode()
                )
            except ValueError:
                raise SettingsError("LIYA_JWT_PUBLIC_KEY_FILE is not a PEM public key") from None
        elif settings.jwt_hs256_secret:
            self._key = settings.jwt_hs256_secret.reveal().encode()
        else:
            raise SettingsError(
                "no token verification key: set LIYA_JWT_HS256_SECRET (or _FILE) or "
                "LIYA_JWT_PUBLIC_KEY_FILE"
            )
        self._algorithms = list(settings.jwt_algorithms)
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds
        self._verified: dict[str, tuple[float, Identity]] = {}
        self._jwt = jwt.PyJWT(
            options={
                "require": ["exp"],
                "verify_aud": self._audience is not None,
                "verify_iss": self._issuer is not None,
            }
        )

    def verify(self, authorization: str | None) -> Identity:
        """Return the caller's identity or raise ``InvalidToken`` saying what is wrong."""
        if not authorization:
            raise InvalidToken("missing authorization metadata: send 'authorization: Bearer <jwt>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("authorization metadata must be 'Bearer <jwt>'")
        token = token.strip()
        cached = self._verified.get(token)
        if cached is not None:
            expires, identity = cached
            if time.time() < expires:
                return identity
            del self._verified[token]
        identity, expires = self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            # Drop the oldest entry; dicts keep insertion order.
            self._verified.pop(next(iter(self._verified)))
        self._verified[token] = (expires, identity)
        return identity

    def _verify(self, token: str) -> tuple[Identity, float]:
        try:
            claims = self._jwt.decode(
                token,
                key=self._key,
                algorithms=self._algorithms,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token has expired") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"token lacks the required claim {exc.claim!r}") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("token issuer is not accepted") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("token audience is not accepted") from None
        except jwt.InvalidAlgorithmError:
            raise InvalidToken(
                f"token algorithm is not accepted (expected {', '.join(self._algorithms)})"
            ) from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("token signature is invalid") from None
        except jwt.PyJWTError:
            raise InvalidToken("token is malformed") from None
        tenant = claims.get("tenant_id")
        if not isinstance(tenant, str) or not TENANT_ID_PATTERN.fullmatch(tenant):
            raise InvalidToken(
                "token lacks a valid 'tenant_id' claim (1-128 of A-Z a-z 0-9 . _ : -)"
            )
        sub = claims.get("sub")
        actor = sub if isinstance(sub, str) and sub else f"tenant:{tenant}"
        # A verified token is reused until it expires (with the same leeway),
        # so callers that keep one token pay for the signature check once.
        expires = float(claims["exp"]) + self._leeway
        return Identity(tenant_id=tenant, actor=actor[:256]), expires


def mint_token(
    settings: Settings, *, tenant: str, sub: str | None = None, ttl_seconds: int = 3600
) -> str:
    """Sign a development token with the HS256 secret (for grpcurl and tests)."""
    if settings.jwt_hs256_secret is None:
        raise SettingsError("minting needs LIYA_JWT_HS256_SECRET (or LIYA_JWT_HS256_SECRET_FILE)")
    if not TENANT_ID_PATTERN.fullmatch(tenant):
        raise SettingsError("tenant must be 1-128 of A-Z a-z 0-9 . _ : -, starting alphanumeric")
    now = int(time.time())
    claims: dict[str, object] = {
        "tenant_id": tenant,
        "sub": sub or f"dev@{tenant}",
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_hs256_secret.reveal(), algorithm="HS256")
