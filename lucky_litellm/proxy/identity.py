"""Who is calling the proxy, and whose experiments they may run.

The rule, in order:

1. A key with the proxy-admin role (the master key, or a key of an admin user) is an **admin**:
   it may run any user's experiments, and it may act for an end user named in the body's ``user``
   field (a backend that holds the master key and passes ``user=<end user>``). Without a body
   ``user`` its identity is the key's own user id.
2. Any other key that belongs to a user (``user_api_key_dict.user_id``, mirrored by the proxy into
   ``metadata.user_api_key_user_id``) **is** that user; the body's ``user`` is ignored for identity,
   since the client chooses it freely.
3. A key without a user id falls back to the body's ``user`` (or no identity at all). Such keys can
   name any user, so give keys a user id wherever ``user:`` experiments must stay private.

A ``user:<id>`` spec is allowed when the identity is ``<id>`` or the key is an admin; otherwise it
is a 403.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import AccessDeniedError

__all__ = ["ADMIN_ROLES", "Identity", "check_access", "identify"]

ADMIN_ROLES = frozenset({"proxy_admin"})
"""LiteLLM user roles that may run every user's experiments (`LitellmUserRoles.PROXY_ADMIN`)."""


@dataclass(frozen=True)
class Identity:
    user_id: str | None
    """Whose request this is (budget, rollout bucket, `user:` access); None when unknown."""
    admin: bool
    source: str
    """Where `user_id` came from: ``key``, ``body`` or ``none`` (shown in the request context)."""


def identify(user_api_key_dict: Any, data: Mapping[str, Any]) -> Identity:
    """Apply the module's rule to the proxy's key record and the request body."""
    metadata = data.get("metadata")
    key_user = getattr(user_api_key_dict, "user_id", None)
    if not key_user and isinstance(metadata, Mapping):
        key_user = metadata.get("user_api_key_user_id")
    role = getattr(user_api_key_dict, "user_role", None)
    admin = str(getattr(role, "value", role) or "") in ADMIN_ROLES
    body_user = data.get("user")
    body_user = body_user if isinstance(body_user, str) and body_user else None
    if admin and body_user:
        return Identity(body_user, True, "body")
    if key_user:
        return Identity(str(key_user), admin, "key")
    if body_user:
        return Identity(body_user, admin, "body")
    return Identity(None, admin, "none")


def check_access(identity: Identity, owner: str) -> None:
    """Raise `AccessDeniedError` unless `identity` may run the experiments of user `owner`."""
    if identity.admin or identity.user_id == owner:
        return
    raise AccessDeniedError(identity.user_id, owner)
