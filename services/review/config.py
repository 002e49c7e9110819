"""Build the service's parts from :class:`hitl.settings.Settings`."""

from __future__ import annotations

import ipaddress
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

import redis

from hitl.logs import get_logger
from hitl.review import flows, reviewers
from hitl.review.accounts import Account, AccountStore, configured_secret
from hitl.review.guards import Guards, SigninPolicy
from hitl.review.publisher import AwsPublisher
from hitl.review.service import ReviewService, ServiceConfig
from hitl.review.store import LoopStore
from hitl.settings import Settings
from services.review import metrics

log = get_logger()


@dataclass
class Runtime:
    """Everything a request handler needs, built once per process."""

    settings: Settings
    service: ReviewService
    api_keys: dict[str, str]
    accounts: AccountStore
    guards: Guards
    session_secret: str
    secure: bool  # Secure cookies and HSTS

    def secret_for(self, access_key: str) -> str | None:
        """The secret of a configured key, else of a key created with ``hitl review keys create``."""
        return self.api_keys.get(access_key) or self.accounts.key_secret(access_key)


def api_keys(settings: Settings) -> dict[str, str]:
    keys = dict(settings.review_api_keys)
    if settings.review_api_keys_file:
        keys.update(json.loads(Path(settings.review_api_keys_file).read_text()))
    if not keys:
        log.warning("review_api_keys_missing", detail="every A2I API call will be refused")
    return keys


def session_secret(settings: Settings) -> str:
    found = configured_secret(settings.review_session_secret, settings.review_session_secret_file)
    if found:
        return found
    log.warning("review_session_secret_generated", detail="sessions end when this process restarts")
    return secrets.token_urlsafe(32)


def secure_cookies(settings: Settings) -> bool:
    """Explicit setting, else on unless the service listens on loopback only."""
    if settings.review_secure_cookies is not None:
        return settings.review_secure_cookies
    try:
        return not ipaddress.ip_address(settings.review_host).is_loopback
    except ValueError:
        return settings.review_host != "localhost"


def seed_accounts(settings: Settings, accounts: AccountStore) -> None:
    """Accounts from the reviewers file (written over: the file is their source) and the first admin."""
    if settings.review_reviewers_file:
        for entry in reviewers.load(Path(settings.review_reviewers_file)).values():
            account = Account(name=entry.name, password_hash=entry.password_hash, roles=entry.roles, teams=entry.teams)
            existing = accounts.get(entry.name)
            accounts.put(account, end_sessions=existing is not None and existing.password_hash != account.password_hash)
    if settings.review_admin_file:
        document = json.loads(Path(settings.review_admin_file).read_text())
        name = str(document["name"])
        if accounts.get(name) is None:
            password_hash = document.get("password_hash") or reviewers.hash_password(str(document["password"]))
            accounts.put(Account(name=name, password_hash=password_hash, roles=["reviewer", "operator", "admin"]))
            log.info("review_admin_created", reviewer=name)
    if not accounts.all():
        log.warning("review_accounts_missing", detail="nobody can sign in to the portal")


def flow_definitions(settings: Settings) -> list[flows.FlowDefinition]:
    if settings.review_flow_definitions_file:
        return flows.load_file(Path(settings.review_flow_definitions_file))
    return [flows.default_flow(settings.review_default_flow_name, settings.bucket, settings.a2i_output_prefix)]


def build(settings: Settings) -> Runtime:
    store = LoopStore(redis.Redis.from_url(settings.redis_url), settings.key)
    config = ServiceConfig(
        region=settings.review_region,
        account=settings.review_account_id,
        event_source=settings.a2i_event_source,
        event_bus=settings.event_bus,
        image_buckets=frozenset(settings.review_image_buckets or [settings.bucket]),
        image_prefixes=tuple(settings.review_image_prefixes),
        excluded_prefixes=tuple(
            p
            for p in (settings.models_prefix, settings.records_prefix, settings.datasets_prefix,
                      settings.a2i_output_prefix, settings.audits_prefix)
            if p
        ),
        max_json_depth=settings.review_max_json_depth,
        max_input_chars=settings.review_max_input_chars,
        max_open_loops=settings.review_max_open_loops,
        max_image_bytes=settings.review_max_image_bytes,
        stop_delay_seconds=settings.review_stop_delay_seconds,
        retention_seconds=settings.retention_days * 86400,
        default_output_path=f"s3://{settings.bucket}/{settings.a2i_output_prefix.strip('/')}",
    )

    def on_answer(reviewer: str, seconds: float) -> None:
        metrics.ANSWERS.labels(reviewer=reviewer).inc()
        metrics.TASK_SECONDS.observe(seconds)

    service = ReviewService(
        store,
        AwsPublisher(),
        config,
        on_event=lambda status: metrics.EVENTS_EMITTED.labels(status=status).inc(),
        on_answer=on_answer,
    )
    secret = session_secret(settings)
    accounts = AccountStore(store.r, settings.key, secret)
    seed_accounts(settings, accounts)
    policy = SigninPolicy(
        free_failures=settings.review_signin_free_failures,
        window_seconds=settings.review_signin_window_seconds,
        base_seconds=settings.review_signin_backoff_seconds,
        max_seconds=settings.review_signin_backoff_max_seconds,
    )
    guards = Guards(store.r, settings.key, policy)
    return Runtime(settings, service, api_keys(settings), accounts, guards, secret, secure_cookies(settings))
