"""Flow definitions as data: stored in the review service's Redis, created and changed through the
admin API, and seeded from the configuration file.

Two hashes keyed by ARN: ``review:flows`` (the definition, the shape loops snapshot) and
``review:flow-meta`` (creation and modification times, version, source), always written together
in one transaction. Configured flows are *seeds*: written at start (replacing a stored copy that
still has source ``file``, keeping one changed through the API), and written again whenever they
are missing, e.g. after the Redis database was flushed, so StartHumanLoop and ListHumanLoops keep
working without a restart. Flows created only through the API live in Redis alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import redis

from hitl.logs import get_logger
from hitl.review import flow_requests, pagination, timefmt, validation
from hitl.review.errors import ConflictError, NotFoundError
from hitl.review.flows import FlowDefinition, FlowMeta

log = get_logger()
KeyFn = Callable[..., str]
Edit = Callable[[FlowDefinition], FlowDefinition]


class FlowRegistry:
    def __init__(
        self,
        client: redis.Redis,
        key: KeyFn,
        region: str,
        account: str,
        clock: Callable[[], datetime] = timefmt.now,
    ) -> None:
        self.r = client
        self._flows_key = key("flows")
        self._meta_key = key("flow-meta")
        self.region = region
        self.account = account
        self.clock = clock
        self._seeds: dict[str, FlowDefinition] = {}

    def arn(self, name: str) -> str:
        return validation.flow_arn(self.region, self.account, name)

    # --- reads ---------------------------------------------------------------------------------
    def get(self, arn: str) -> FlowDefinition | None:
        """The stored definition; a configured flow that went missing is written back first."""
        raw = self.r.hget(self._flows_key, arn)
        if raw:
            return FlowDefinition.model_validate_json(raw)  # type: ignore[arg-type]
        seed = self._seeds.get(arn)
        if seed is None:
            return None
        self._seed(arn, seed, restore=True)
        return self.get_stored(arn)

    def get_stored(self, arn: str) -> FlowDefinition | None:
        raw = self.r.hget(self._flows_key, arn)
        return FlowDefinition.model_validate_json(raw) if raw else None  # type: ignore[arg-type]

    def meta(self, arn: str) -> FlowMeta:
        raw = self.r.hget(self._meta_key, arn)
        if raw:
            return FlowMeta.model_validate_json(raw)  # type: ignore[arg-type]
        now = self.clock()  # stored by an older release without bookkeeping
        return FlowMeta(creation_time=now, last_modified_time=now, version=1, source="file")

    def all(self) -> dict[str, tuple[FlowDefinition, FlowMeta]]:
        self.ensure_seeded()
        with self.r.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._flows_key)
            pipe.hgetall(self._meta_key)
            flows_raw, meta_raw = pipe.execute()
        now = self.clock()
        fallback = FlowMeta(creation_time=now, last_modified_time=now)
        found = {}
        for arn_raw, value in flows_raw.items():
            meta = meta_raw.get(arn_raw)
            found[arn_raw.decode()] = (
                FlowDefinition.model_validate_json(value),
                FlowMeta.model_validate_json(meta) if meta else fallback,
            )
        return found

    # --- seeds ---------------------------------------------------------------------------------
    def seed(self, flows: list[FlowDefinition]) -> list[str]:
        """Register the configured flows (at start); they are restored whenever missing later."""
        arns = []
        for flow in flows:
            arn = self.arn(flow.flow_definition_name)
            self._seeds[arn] = flow
            self._seed(arn, flow, restore=False)
            arns.append(arn)
        return arns

    def ensure_seeded(self) -> list[str]:
        """Write back every configured flow that is missing; the ARNs restored."""
        if not self._seeds:
            return []
        present = {a.decode() for a in self.r.hkeys(self._flows_key)}  # type: ignore[union-attr]
        restored = []
        for arn, flow in self._seeds.items():
            if arn not in present and self._seed(arn, flow, restore=True):
                restored.append(arn)
        return restored

    def _seed(self, arn: str, flow: FlowDefinition, restore: bool) -> bool:
        """Write a configured flow unless a copy changed through the API is stored; True if written."""
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(self._flows_key, self._meta_key)  # type: ignore[no-untyped-call]
                    raw = pipe.hget(self._flows_key, arn)
                    raw_meta = pipe.hget(self._meta_key, arn)
                    meta = FlowMeta.model_validate_json(raw_meta) if raw_meta else None  # type: ignore[arg-type]
                    stored = FlowDefinition.model_validate_json(raw) if raw else None  # type: ignore[arg-type]
                    if stored is not None and (stored == flow or (meta is not None and meta.source == "api")):
                        pipe.unwatch()
                        if stored != flow:
                            log.warning("flow_definition_file_ignored", flow_definition_arn=arn,
                                        detail="changed through the API since; the stored definition is kept")
                        if meta is None:
                            now = self.clock()
                            self.r.hsetnx(self._meta_key, arn, FlowMeta(
                                creation_time=now, last_modified_time=now).model_dump_json(by_alias=True))
                        return False
                    now = self.clock()
                    new_meta = FlowMeta(
                        creation_time=meta.creation_time if meta and stored else now,
                        last_modified_time=now,
                        version=(meta.version + 1) if meta and stored else 1,
                        source="file",
                    )
                    pipe.multi()
                    self._write(pipe, arn, flow, new_meta)
                    pipe.execute()
                    log.info("flow_definition_restored" if restore else "flow_definition_registered",
                             flow_definition_arn=arn, version=new_meta.version)
                    return True
                except redis.WatchError:
                    continue

    def _write(self, pipe: Any, arn: str, flow: FlowDefinition, meta: FlowMeta) -> None:
        pipe.hset(self._flows_key, arn, flow.model_dump_json(by_alias=True))
        pipe.hset(self._meta_key, arn, meta.model_dump_json(by_alias=True))

    def put(self, flow: FlowDefinition, source: str = "file") -> str:
        """Store ``flow`` unconditionally (tests and tools); its ARN."""
        arn = self.arn(flow.flow_definition_name)
        now = self.clock()
        meta = FlowMeta(creation_time=now, last_modified_time=now, source="api" if source == "api" else "file")
        with self.r.pipeline(transaction=True) as pipe:
            self._write(pipe, arn, flow, meta)
            pipe.execute()
        return arn

    # --- administrative API ----------------------------------------------------------------------
    def create(self, flow: FlowDefinition) -> tuple[str, bool]:
        """Store a new flow; (ARN, created). The same definition again is a retried create."""
        arn = self.arn(flow.flow_definition_name)
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(self._flows_key)  # type: ignore[no-untyped-call]
                    raw = pipe.hget(self._flows_key, arn)
                    if raw:
                        pipe.unwatch()
                        if FlowDefinition.model_validate_json(raw) == flow:  # type: ignore[arg-type]
                            return arn, False
                        raise ConflictError(
                            f"Flow definition {flow.flow_definition_name} already exists; update it instead"
                        )
                    now = self.clock()
                    pipe.multi()
                    self._write(pipe, arn, flow, FlowMeta(creation_time=now, last_modified_time=now, source="api"))
                    pipe.execute()
                    log.info("flow_definition_created", flow_definition_arn=arn, labels=len(flow.labels))
                    return arn, True
                except redis.WatchError:
                    continue

    def update(self, name: str, edit: Edit, expected_version: int | None = None) -> tuple[str, bool]:
        """Apply ``edit`` atomically; (ARN, changed). Unknown flow: 404; other version: 409."""
        arn = self.arn(validation.flow_name(name))
        self.get(arn)  # a configured flow that went missing is restored, then edited
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(self._flows_key, self._meta_key)  # type: ignore[no-untyped-call]
                    raw = pipe.hget(self._flows_key, arn)
                    if not raw:
                        pipe.unwatch()
                        raise NotFoundError(f"Flow definition {name} does not exist")
                    raw_meta = pipe.hget(self._meta_key, arn)
                    current = FlowDefinition.model_validate_json(raw)  # type: ignore[arg-type]
                    meta = FlowMeta.model_validate_json(raw_meta) if raw_meta else self.meta(arn)  # type: ignore[arg-type]
                    if expected_version is not None and expected_version != meta.version:
                        pipe.unwatch()
                        raise ConflictError(
                            f"Flow definition {name} is at version {meta.version}, not {expected_version}"
                        )
                    new = edit(current)
                    if new == current:
                        pipe.unwatch()
                        return arn, False
                    new_meta = FlowMeta(
                        creation_time=meta.creation_time,
                        last_modified_time=self.clock(),
                        version=meta.version + 1,
                        source="api",
                    )
                    pipe.multi()
                    self._write(pipe, arn, new, new_meta)
                    pipe.execute()
                    log.info("flow_definition_updated", flow_definition_arn=arn, version=new_meta.version)
                    return arn, True
                except redis.WatchError:
                    continue

    def describe(self, name: str) -> dict[str, Any]:
        arn = self.arn(validation.flow_name(name))
        flow = self.get(arn)
        if flow is None:
            raise NotFoundError(f"Flow definition {name} does not exist")
        return flow_requests.describe(arn, flow, self.meta(arn))

    def list_page(self, params: Mapping[str, str]) -> dict[str, Any]:
        """ListFlowDefinitions: SortOrder (default Descending), MaxResults, NextToken, creation filters."""
        limit = validation.max_results(params.get("MaxResults"))
        order = validation.sort_order(params.get("SortOrder"))
        ascending = order == "Ascending"
        low, high = validation.creation_time_bounds(params)
        query = pagination.fingerprint(
            "flows", order, params.get("CreationTimeAfter"), params.get("CreationTimeBefore")
        )
        token = params.get("NextToken")
        cursor = pagination.decode(token, query) if token else None
        rows = []
        for arn, (flow, meta) in self.all().items():
            created = timefmt.epoch_ms(meta.creation_time)
            entry = (created, flow.flow_definition_name)
            if low <= created <= high and (cursor is None or pagination.after(entry, cursor, ascending)):
                rows.append((entry, arn, flow, meta))
        rows.sort(key=lambda row: row[0], reverse=not ascending)
        page, rest = rows[:limit], rows[limit:]
        result: dict[str, Any] = {
            "FlowDefinitionSummaries": [flow_requests.summary(arn, flow, meta) for _, arn, flow, meta in page]
        }
        if rest:
            result["NextToken"] = pagination.encode(page[-1][0], query)
        return result
