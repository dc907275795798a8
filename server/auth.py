"""Bearer tokens with roles. Tokens are 256-bit random strings, so a plain SHA-256 is the right
hash (no password stretching needed); only the hash and a short prefix are stored."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.errors import Forbidden, NotFound, Unauthorized
from server.models import ApiToken, utcnow

ROLES = ("viewer", "operator", "worker", "admin")
# what each role may do: reads, run control, the worker protocol, token administration
GRANTS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "operator": frozenset({"read", "control"}),
    "worker": frozenset({"read", "work"}),
    "admin": frozenset({"read", "control", "work", "admin"}),
}
TOKEN_PREFIX = "sala_"


@dataclass(frozen=True)
class Principal:
    role: str
    name: str
    token_id: int | None = None

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.name}"

    def can(self, grant: str) -> bool:
        return grant in GRANTS[self.role]


ANONYMOUS_ADMIN = Principal(role="admin", name="local")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(db: Session, name: str, role: str) -> tuple[ApiToken, str]:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, role=role, token_hash=hash_token(token), prefix=token[:12])
    db.add(row)
    db.flush()
    return row, token


def list_tokens(db: Session) -> list[ApiToken]:
    return list(db.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke_token(db: Session, token_id: int) -> ApiToken:
    row = db.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"token {token_id} does not exist")
    row.revoked_at = row.revoked_at or utcnow()
    return row


def active_token_count(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(ApiToken).where(ApiToken.revoked_at.is_(None))) or 0


def bearer_token(authorization: str | None) -> str | None:
    """The token an Authorization header carries (None without one), however it is spelled."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return token.strip()


def generation(db: Session) -> tuple[int, int]:
    """Changes whenever a token is created or revoked, by any process (the API, `sala tokens`,
    another server): tokens are never deleted and ids never reused, so the newest id and the
    number revoked only grow. Identities cached under an older generation are stale."""
    newest, revoked = db.execute(select(func.max(ApiToken.id), func.count(ApiToken.revoked_at))).one()
    return newest or 0, revoked


def authenticate(db: Session, token: str | None, *, open_loopback: bool) -> Principal:
    """Resolve the caller. With no token and a loopback server that has no tokens yet, the
    caller is the local admin: that is the single-machine `sala up` experience."""
    if token is None:
        if open_loopback and active_token_count(db) == 0:
            return ANONYMOUS_ADMIN
        raise Unauthorized("this server requires a token: send 'Authorization: Bearer <token>'")
    row = db.scalars(select(ApiToken).where(ApiToken.token_hash == hash_token(token))).first()
    if row is None or row.revoked_at is not None:
        raise Unauthorized("unknown or revoked token")
    return Principal(role=row.role, name=row.name, token_id=row.id)


def touch(db: Session, token_id: int) -> None:
    row = db.get(ApiToken, token_id)
    if row is not None:
        row.last_used_at = utcnow()


TOUCH_EVERY = dt.timedelta(minutes=1)


def authorize(principal: Principal, grant: str) -> Principal:
    if not principal.can(grant):
        raise Forbidden(f"a {principal.role} token cannot do this (needs {grant!r} rights)")
    return principal
