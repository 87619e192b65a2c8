"""SOUL: identities (JWTs with rotating keys and JWKS, API keys), RBAC, secret stores, and the
RELAY edge guard (authentication, authorization, shared rate limits, body size, PII redaction).

Importing SOUL imports neither Ray nor hvac; the rate-limit actor and Vault load on first use.
"""

from mnemos.soul.apikeys import ApiKeyRecord
from mnemos.soul.bootstrap import bootstrap_admin, bootstrap_hook
from mnemos.soul.credentials import authorization_header, current
from mnemos.soul.edge import PUBLIC_PATHS, EdgeGuard
from mnemos.soul.identity import Principal
from mnemos.soul.keys import KeyRing, rotate_keys
from mnemos.soul.pii import redact, redact_value
from mnemos.soul.ratelimit import LocalRateLimiter, SharedRateLimiter, TokenBucket
from mnemos.soul.rbac import ROLES, VERBS, authorize
from mnemos.soul.secrets import (
    SECRET_STORES,
    EnvSecretStore,
    FileSecretStore,
    SecretStore,
    VaultSecretStore,
    resolve_secret_ref,
    secret_store,
)
from mnemos.soul.store import CreatedCredential, IdentityStore
from mnemos.soul.tokens import issue_token, verify_token

__all__ = [
    "PUBLIC_PATHS",
    "ROLES",
    "SECRET_STORES",
    "VERBS",
    "ApiKeyRecord",
    "CreatedCredential",
    "EdgeGuard",
    "EnvSecretStore",
    "FileSecretStore",
    "IdentityStore",
    "KeyRing",
    "LocalRateLimiter",
    "Principal",
    "SecretStore",
    "SharedRateLimiter",
    "TokenBucket",
    "VaultSecretStore",
    "authorization_header",
    "authorize",
    "bootstrap_admin",
    "bootstrap_hook",
    "current",
    "issue_token",
    "redact",
    "redact_value",
    "resolve_secret_ref",
    "rotate_keys",
    "secret_store",
    "verify_token",
]
