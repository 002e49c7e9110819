"""``hitl review users|keys``: the review service's accounts and API keys.

``hitl review users add|remove|list|passwd|roles`` and ``hitl review keys create|revoke|list`` write
straight into the review service's Redis store (the same ``HITL_REDIS_URL`` and key prefix), so every
replica sees a change at once; password changes and removals end the account's sessions.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import redis
import typer

from hitl.review.accounts import ROLES, AccountStore, configured_secret
from hitl.settings import get_settings

accounts_app = typer.Typer(add_completion=False)
users_app = typer.Typer(help="Reviewer accounts (names, passwords, roles, teams).", no_args_is_help=True)
keys_app = typer.Typer(help="SigV4 API keys of the A2I runtime API.", no_args_is_help=True)
accounts_app.add_typer(users_app, name="users")
accounts_app.add_typer(keys_app, name="keys")


def _store(need_secret: bool = False) -> AccountStore:
    settings = get_settings()
    secret = configured_secret(settings.review_session_secret, settings.review_session_secret_file)
    if need_secret and not secret:
        typer.echo("API keys are sealed with the service's session secret: set HITL_REVIEW_SESSION_SECRET_FILE",
                   err=True)
        raise typer.Exit(2)
    return AccountStore(redis.Redis.from_url(settings.redis_url), settings.key, secret)


def _password(prompt: bool, from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif os.environ.get("HITL_NEW_PASSWORD"):
        password = os.environ["HITL_NEW_PASSWORD"]
    elif prompt:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise typer.BadParameter("the passwords differ")
    else:
        raise typer.BadParameter("give the password on stdin (--password-stdin) or in HITL_NEW_PASSWORD")
    if len(password) < 12:
        raise typer.BadParameter("passwords have at least 12 characters")
    return password


def _roles(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    roles = [r.strip() for v in values for r in v.split(",") if r.strip()]
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise typer.BadParameter(f"unknown roles {unknown}; roles are {list(ROLES)}")
    return roles


def _teams(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [t.strip() for v in values for t in v.split(",") if t.strip()]


RoleOption = Annotated[list[str] | None, typer.Option("--role", "-r", help=f"one of {', '.join(ROLES)} (repeatable)")]
TeamOption = Annotated[list[str] | None, typer.Option("--team", "-t", help="work team (repeatable)")]
StdinOption = Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")]


@users_app.command("add")
def users_add(name: str, role: RoleOption = None, team: TeamOption = None, password_stdin: StdinOption = False) -> None:
    """Create an account (default role: reviewer)."""
    password = _password(sys.stdin.isatty(), password_stdin)
    try:
        account = _store().add(name, password, _roles(role) or ["reviewer"], _teams(team) or [])
    except (KeyError, ValueError) as error:
        typer.echo(f"not added: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(account.public()))


@users_app.command("remove")
def users_remove(name: str) -> None:
    """Delete an account and end its sessions."""
    if not _store().remove(name):
        typer.echo(f"no account {name!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"removed {name}")


@users_app.command("list")
def users_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Accounts with their roles and teams (never their password hashes)."""
    accounts = [a.public() for a in _store().all()]
    if as_json:
        typer.echo(json.dumps(accounts, indent=2))
        return
    for a in accounts:
        typer.echo(f"{a['name']:24} roles={','.join(a['roles']) or '-':28} teams={','.join(a['teams']) or '-'}")


@users_app.command("passwd")
def users_passwd(name: str, password_stdin: StdinOption = False) -> None:
    """Set a new password; every session of the account ends."""
    password = _password(sys.stdin.isatty(), password_stdin)
    try:
        _store().set_password(name, password)
    except KeyError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"password of {name} changed; its sessions ended")


@users_app.command("roles")
def users_roles(name: str, role: RoleOption = None, team: TeamOption = None) -> None:
    """Replace an account's roles and/or teams (only what is given); show them."""
    store = _store()
    try:
        account = store.set_roles(name, _roles(role), _teams(team))
    except (KeyError, ValueError) as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(account.public()))


@keys_app.command("create")
def keys_create(
    description: Annotated[str, typer.Option(help="what the key is for")] = "",
    admin: Annotated[bool, typer.Option("--admin", help="may also create and change flow definitions")] = False,
    output: Annotated[Path | None, typer.Option(help="write {access_key_id, secret_access_key} here (0600)")] = None,
) -> None:
    """A new access key id and secret for the A2I API; the secret is shown once."""
    access_key, secret = _store(need_secret=True).create_key(description, admin)
    document = json.dumps({"access_key_id": access_key, "secret_access_key": secret})
    if output:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(document)
        typer.echo(f"{access_key} (secret in {output})")
    else:
        typer.echo(document)


@keys_app.command("revoke")
def keys_revoke(access_key: str) -> None:
    """Revoke a key created with `keys create`; requests signed with it are refused at once."""
    if not _store().revoke_key(access_key):
        typer.echo(f"no key {access_key!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {access_key}")


@keys_app.command("list")
def keys_list() -> None:
    """Access key ids with their creation time and description (never secrets)."""
    typer.echo(json.dumps(_store().keys(), indent=2))
