"""Reviewer accounts, A2I API keys and portal sessions, kept in Redis beside the loops.

- Accounts: name, argon2id password hash, roles (``reviewer``, ``operator``, ``admin``) and work teams.
  Changing a password or removing an account ends every session of that account.
- API keys: SigV4 is an HMAC, so the service needs each secret itself, not a one-way hash of it; a
  secret is stored sealed (Fernet, keyed from the service's session secret) and unsealed on use.
- Sessions: a random id in the signed cookie names a server-side record, so logout, a password
  change or a removed account end the session everywhere, across replicas.
- One-use sign-in tokens: each sign-in form carries a token that a POST to /login consumes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from cryptography.fernet import Fernet, InvalidToken
from pydantic import BaseModel, Field, field_validator

from hitl.review.flows import TEAM_NAME_RE
from hitl.review.reviewers import NAME_RE, hash_password

ROLES = ("reviewer", "operator", "admin")
ACCESS_KEY_PREFIX = "HITLR"


class Account(BaseModel):
    name: str
    password_hash: str
    roles: list[str] = Field(default_factory=lambda: ["reviewer"])
    teams: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.fullmatch(value):
            raise ValueError("account names are 1-64 letters, digits, '.', '_', '@' or '-'")
        return value

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: list[str]) -> list[str]:
        unknown = [r for r in value if r not in ROLES]
        if unknown:
            raise ValueError(f"unknown roles {unknown}; roles are {list(ROLES)}")
        return sorted(set(value), key=ROLES.index)

    @field_validator("teams")
    @classmethod
    def _teams(cls, value: list[str]) -> list[str]:
        if any(not TEAM_NAME_RE.fullmatch(t) for t in value):
            raise ValueError("team names are 1-64 letters, digits, '.', '_' or '-'")
        return sorted(set(value))

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def is_operator(self) -> bool:
        return "operator" in self.roles or self.is_admin

    @property
    def is_reviewer(self) -> bool:
        return "reviewer" in self.roles

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "roles": self.roles, "teams": self.teams}


@dataclass(frozen=True)
class Session:
    sid: str
    reviewer: str
    csrf: str
    signed_in_at: int


def _fernet(master_secret: str) -> Fernet:
    digest = hashlib.sha256(b"hitl-review/api-keys/" + master_secret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class AccountStore:
    """Accounts, keys, sessions and sign-in tokens under ``<prefix>:review:...`` in Redis."""

    def __init__(self, client: redis.Redis, key: Any, master_secret: str | None) -> None:
        self.r = client
        self._key = key
        self._sealer = _fernet(master_secret) if master_secret else None

    @property
    def _fernet(self) -> Fernet:
        if self._sealer is None:
            raise RuntimeError("API keys need the service's session secret (HITL_REVIEW_SESSION_SECRET[_FILE])")
        return self._sealer

    def k(self, *parts: str) -> str:
        return str(self._key("review", *parts))

    # --- accounts --------------------------------------------------------------------------------
    def get(self, name: str) -> Account | None:
        if not NAME_RE.fullmatch(name):
            return None
        raw = self.r.hget(self.k("accounts"), name)
        return Account.model_validate_json(raw) if raw else None  # type: ignore[arg-type]

    def all(self) -> list[Account]:
        raw: dict[bytes, bytes] = self.r.hgetall(self.k("accounts"))  # type: ignore[assignment]
        return sorted((Account.model_validate_json(v) for v in raw.values()), key=lambda a: a.name)

    def put(self, account: Account, *, end_sessions: bool = False) -> None:
        self.r.hset(self.k("accounts"), account.name, account.model_dump_json())
        if end_sessions:
            self.end_sessions(account.name)

    def add(self, name: str, password: str, roles: list[str], teams: list[str]) -> Account:
        account = Account(name=name, password_hash=hash_password(password), roles=roles, teams=teams)
        if not self.r.hsetnx(self.k("accounts"), account.name, account.model_dump_json()):
            raise KeyError(f"account {name!r} exists")
        return account

    def set_password(self, name: str, password: str) -> Account:
        account = self._require(name)
        updated = account.model_copy(update={"password_hash": hash_password(password)})
        self.put(updated, end_sessions=True)
        return updated

    def set_roles(self, name: str, roles: list[str] | None, teams: list[str] | None) -> Account:
        account = self._require(name)
        changes: dict[str, Any] = {}
        if roles is not None:
            changes["roles"] = roles
        if teams is not None:
            changes["teams"] = teams
        updated = Account.model_validate({**account.model_dump(), **changes})
        self.put(updated)
        return updated

    def remove(self, name: str) -> bool:
        removed = bool(self.r.hdel(self.k("accounts"), name))
        self.end_sessions(name)
        return removed

    def _require(self, name: str) -> Account:
        account = self.get(name)
        if account is None:
            raise KeyError(f"no account {name!r}")
        return account

    # --- API keys ----------------------------------------------------------------------------------
    def create_key(self, description: str = "", admin: bool = False) -> tuple[str, str]:
        """A new key; ``admin`` keys may also change flow definitions (the flows admin API)."""
        access_key = ACCESS_KEY_PREFIX + secrets.token_hex(8).upper()
        secret = secrets.token_urlsafe(30)
        record = {
            "sealed": self._fernet.encrypt(secret.encode()).decode(),
            "created": int(time.time()),
            "description": description[:200],
            "admin": admin,
        }
        self.r.hset(self.k("api-keys"), access_key, json.dumps(record))
        return access_key, secret

    def key_secret(self, access_key: str) -> str | None:
        if len(access_key) > 128:
            return None
        raw = self.r.hget(self.k("api-keys"), access_key)
        if not raw or self._sealer is None:
            return None
        try:
            return self._fernet.decrypt(json.loads(raw)["sealed"].encode()).decode()  # type: ignore[arg-type]
        except (InvalidToken, KeyError, ValueError):
            return None  # sealed under another secret: unusable, as if revoked

    def key_is_admin(self, access_key: str) -> bool:
        raw = self.r.hget(self.k("api-keys"), access_key) if 0 < len(access_key) <= 128 else None
        return bool(raw) and bool(json.loads(raw).get("admin"))  # type: ignore[arg-type]

    def revoke_key(self, access_key: str) -> bool:
        return bool(self.r.hdel(self.k("api-keys"), access_key))

    def keys(self) -> list[dict[str, Any]]:
        raw: dict[bytes, bytes] = self.r.hgetall(self.k("api-keys"))  # type: ignore[assignment]
        found = []
        for key, value in sorted(raw.items()):
            record = json.loads(value)
            found.append(
                {
                    "access_key": key.decode(),
                    "created": record["created"],
                    "description": record["description"],
                    "admin": bool(record.get("admin")),
                }
            )
        return found

    # --- sessions ----------------------------------------------------------------------------------
    def create_session(self, reviewer: str, ttl_seconds: int) -> Session:
        session = Session(secrets.token_urlsafe(32), reviewer, secrets.token_urlsafe(32), int(time.time()))
        record = json.dumps({"reviewer": reviewer, "csrf": session.csrf, "signed_in_at": session.signed_in_at})
        with self.r.pipeline(transaction=True) as pipe:
            pipe.set(self.k("session", _digest(session.sid)), record, ex=ttl_seconds)
            pipe.sadd(self.k("sessions-of", reviewer), _digest(session.sid))
            pipe.expire(self.k("sessions-of", reviewer), ttl_seconds)
            pipe.execute()
        return session

    def get_session(self, sid: str) -> Session | None:
        if not sid or len(sid) > 128:
            return None
        raw = self.r.get(self.k("session", _digest(sid)))
        if not raw:
            return None
        record = json.loads(raw)  # type: ignore[arg-type]
        return Session(sid, record["reviewer"], record["csrf"], int(record["signed_in_at"]))

    def end_session(self, sid: str) -> None:
        session = self.get_session(sid)
        with self.r.pipeline(transaction=True) as pipe:
            pipe.delete(self.k("session", _digest(sid)))
            if session is not None:
                pipe.srem(self.k("sessions-of", session.reviewer), _digest(sid))
            pipe.execute()

    def end_sessions(self, reviewer: str) -> int:
        members = [m.decode() for m in self.r.smembers(self.k("sessions-of", reviewer))]  # type: ignore[union-attr]
        with self.r.pipeline(transaction=True) as pipe:
            for digest in members:
                pipe.delete(self.k("session", digest))
            pipe.delete(self.k("sessions-of", reviewer))
            pipe.execute()
        return len(members)

    # --- one-use sign-in tokens ----------------------------------------------------------------------
    def issue_login_token(self, ttl_seconds: int) -> str:
        token = secrets.token_urlsafe(32)
        self.r.set(self.k("login-token", _digest(token)), b"1", ex=ttl_seconds)
        return token

    def consume_login_token(self, token: str) -> bool:
        if not token or len(token) > 128:
            return False
        return self.r.getdel(self.k("login-token", _digest(token))) is not None


def configured_secret(secret: str, secret_file: Any) -> str | None:
    """The session secret from the settings' value or file; None when neither is set."""
    if secret:
        return secret
    if secret_file:
        return Path(secret_file).read_text().strip()
    return None
