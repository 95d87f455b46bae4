"""Access tokens as LoopBack keeps them: expiry deletes a token on its first use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
import secrets
import string
import time

from .errors import authorization_required, invalid_token

_TOKEN_ALPHABET = string.ascii_letters + string.digits


@dataclass
class AccessToken:
    """An issued token; `expired` forces expiry regardless of its ttl."""

    id: str
    user_id: str
    ttl: int
    created: float
    expired: bool = False

    @property
    def is_expired(self) -> bool:
        """Whether the token's life is over."""
        return self.expired or time.time() >= self.created + self.ttl

    @property
    def created_iso(self) -> str:
        """Creation time as the login response shows it."""
        moment = datetime.fromtimestamp(self.created, UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class TokenStore:
    """Issues, resolves, expires and revokes tokens."""

    def __init__(self) -> None:
        self._tokens: dict[str, AccessToken] = {}

    def issue(self, user_id: str, ttl: int) -> AccessToken:
        """A new 64-character token for the user."""
        token_id = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(64))
        token = AccessToken(token_id, user_id, ttl, time.time())
        self._tokens[token_id] = token
        return token

    def resolve(self, token_id: str | None) -> AccessToken:
        """The valid token, or the ApiError LoopBack answers (deleting it on first expired use)."""
        token = self._tokens.get(token_id) if token_id else None
        if token is None:
            raise authorization_required()
        if token.is_expired:
            del self._tokens[token.id]
            raise invalid_token()
        return token

    def peek(self, token_id: str) -> AccessToken | None:
        """The token as stored, expired or not (the event stream checks expiry itself)."""
        return self._tokens.get(token_id)

    def expire_all(self) -> None:
        """Every issued token is expired from now on."""
        for token in self._tokens.values():
            token.expired = True

    def revoke_user(self, user_id: str) -> None:
        """Delete every token of the user (a password change logs them out)."""
        self._tokens = {k: t for k, t in self._tokens.items() if t.user_id != user_id}
