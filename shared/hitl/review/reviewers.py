"""Reviewer accounts: names, argon2 password hashes and roles, from a JSON file.

``{"reviewers": [{"name": "alice", "password_hash": "$argon2id$...", "roles": ["reviewer"], "teams": []}]}``;
the role ``operator`` also opens the operator page. At start the service copies these accounts into
its store (:mod:`hitl.review.accounts`), where ``hitl review users`` manages them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, Field, field_validator

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_hasher = PasswordHasher()
# Verified against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class Reviewer(BaseModel):
    name: str
    password_hash: str
    roles: list[str] = Field(default_factory=lambda: ["reviewer"])
    teams: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.fullmatch(value):
            raise ValueError("reviewer names are 1-64 letters, digits, '.', '_', '@' or '-'")
        return value

    @property
    def is_operator(self) -> bool:
        return "operator" in self.roles


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def load(path: Path) -> dict[str, Reviewer]:
    document = json.loads(path.read_text())
    found = [Reviewer.model_validate(r) for r in document.get("reviewers", [])]
    return {r.name: r for r in found}


def password_matches(password_hash: str | None, password: str) -> bool:
    """argon2id check; an unknown account (None) costs the same as a wrong password."""
    try:
        _hasher.verify(password_hash or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return password_hash is not None


def authenticate(reviewers: dict[str, Reviewer], name: str, password: str) -> Reviewer | None:
    reviewer = reviewers.get(name)
    return reviewer if password_matches(reviewer.password_hash if reviewer else None, password) else None


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def generate(
    reviewers_file: Path, passwords_file: Path, names: list[str], operators: frozenset[str] = frozenset()
) -> dict[str, str]:
    """Create accounts with random passwords: hashes to ``reviewers_file``, passwords (0600) beside."""
    passwords = {name: secrets.token_urlsafe(18) for name in names}
    entries = [
        {
            "name": name,
            "password_hash": hash_password(password),
            "roles": ["reviewer", "operator"] if name in operators else ["reviewer"],
        }
        for name, password in passwords.items()
    ]
    _write_private(reviewers_file, json.dumps({"reviewers": entries}, indent=2))
    _write_private(passwords_file, json.dumps(passwords, indent=2))
    return passwords
