"""Runtime parameters in SSM Parameter Store, read through a short cache.

Operators change these while the pipeline runs (``hitl params set``); every process sees a change
within ``params_cache_seconds`` without a restart. Names and defaults are those of the AWS
continuous-improvement reference solution.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hitl import aws
from hitl.domain.strategies import DEFAULT_STRATEGY, STRATEGIES, Strategy
from hitl.settings import Settings, get_settings


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: str
    kind: type
    help: str
    choices: tuple[str, ...] = ()


SPECS: dict[str, ParamSpec] = {
    s.name: s
    for s in (
        ParamSpec("Enable-Automatic-Training", "true", bool, "scheduled check for retraining on/off"),
        ParamSpec("Automatic-Training-Poll-Frequency", "600", int, "minutes between training checks"),
        ParamSpec("Minimum-Untrained-Images", "10", int, "new human labels needed to train"),
        ParamSpec("Minimum-F1-Score", "0.8", float, "a new version deploys only at or above this F1"),
        ParamSpec("Minimum-Inference-Units", "1", int, "inference units of a deployed Rekognition model"),
        ParamSpec("Minimum-Label-Detection-Confidence", "70", float, "below this (0-100) a detection goes to review"),
        ParamSpec("Enable-A2I-Workflow", "true", bool, "human review on/off"),
        ParamSpec("Enable-Automatic-Human-Sampling", "true", bool, "audit sampling on/off"),
        # Kept so the reference solution's parameter set carries over; nothing reads it: the audit
        # sample is decided per detection as it happens (every Human-Sampling-Interval-th), so
        # there is no periodic sampling run to schedule (docs/human-loops.md, "Audit sampling").
        ParamSpec(
            "Automatic-Human-Sampling-Frequency",
            "600",
            int,
            "not used: audit samples are chosen per detection as it happens (docs/human-loops.md)",
        ),
        ParamSpec("Human-Sampling-Interval", "1000", int, "every nth detection goes to audit"),
        ParamSpec(
            "Label-Confidence-Overrides",
            "{}",
            dict,
            'per-label thresholds as JSON, e.g. {"face": 80}',
        ),
        ParamSpec(
            "Routing-Strategy",
            DEFAULT_STRATEGY,
            str,
            "which images go to review: threshold | uncertainty | diverse-uncertainty | random "
            "(docs/label-efficiency.md)",
            STRATEGIES,
        ),
        ParamSpec(
            "Max-Human-Reviews-Per-Hour",
            "0",
            int,
            "human loops started per rolling hour at most; 0: no limit (docs/label-efficiency.md)",
        ),
        ParamSpec(
            "Max-Open-Human-Loops",
            "0",
            int,
            "human loops in progress at once at most; 0: no limit (docs/label-efficiency.md)",
        ),
        ParamSpec(
            "Target-Auto-Accept-Precision",
            "0.95",
            float,
            "precision the auto-accept threshold must show at 95 % confidence from the audits",
        ),
    )
}


class ParamError(ValueError):
    pass


def parse(name: str, raw: str) -> Any:
    """Typed value of a parameter's string; ParamError with the reason if it does not parse."""
    import json

    spec = SPECS.get(name)
    if spec is None:
        raise ParamError(f"unknown parameter {name!r}; known: {', '.join(sorted(SPECS))}")
    text = raw.strip()
    try:
        if spec.kind is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError("expected true or false")
            return text.lower() == "true"
        if spec.kind is dict:
            value = json.loads(text)
            if not isinstance(value, dict) or not all(isinstance(v, int | float) for v in value.values()):
                raise ValueError("expected a JSON object of label → number")
            return {str(k): float(v) for k, v in value.items()}
        if spec.choices:
            if text.lower() not in spec.choices:
                raise ValueError(f"expected one of {', '.join(spec.choices)}")
            return text.lower()
        value = spec.kind(text)
        if name in ("Max-Human-Reviews-Per-Hour", "Max-Open-Human-Loops") and value < 0:
            raise ValueError("expected a number ≥ 0 (0: no limit)")
        if name == "Target-Auto-Accept-Precision" and not 0.0 < value < 1.0:
            raise ValueError("expected a precision strictly between 0 and 1")
        return value
    except (ValueError, TypeError) as exc:
        raise ParamError(f"{name}: {raw!r} is not a valid {spec.kind.__name__}: {exc}") from exc


@dataclass(frozen=True)
class Snapshot:
    """All runtime parameters at one moment, typed."""

    values: dict[str, Any]
    modified: dict[str, datetime]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def min_confidence(self) -> float:
        return float(self.values["Minimum-Label-Detection-Confidence"])

    @property
    def label_overrides(self) -> dict[str, float]:
        return dict(self.values["Label-Confidence-Overrides"])

    @property
    def review_enabled(self) -> bool:
        return bool(self.values["Enable-A2I-Workflow"])

    @property
    def sampling_enabled(self) -> bool:
        return bool(self.values["Enable-Automatic-Human-Sampling"])

    @property
    def sampling_interval(self) -> int:
        return int(self.values["Human-Sampling-Interval"])

    @property
    def routing_strategy(self) -> Strategy:
        return self.values["Routing-Strategy"]  # type: ignore[no-any-return]

    @property
    def max_reviews_per_hour(self) -> int:
        return int(self.values["Max-Human-Reviews-Per-Hour"])

    @property
    def max_open_loops(self) -> int:
        return int(self.values["Max-Open-Human-Loops"])

    @property
    def target_auto_accept_precision(self) -> float:
        return float(self.values["Target-Auto-Accept-Precision"])

    @property
    def sampling_epoch(self) -> str:
        """Identifies the moment sampling was (re)enabled: counting starts again from there."""
        stamp = self.modified.get("Enable-Automatic-Human-Sampling")
        return stamp.isoformat() if stamp else "default"


def defaults() -> Snapshot:
    return Snapshot({n: parse(n, s.default) for n, s in SPECS.items()}, {})


class ParameterStore:
    """Reads every parameter under ``params_path`` in one paginated call, cached for a few seconds."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._lock = threading.Lock()
        self._cached: Snapshot | None = None
        self._fetched_at = 0.0

    def _path(self, name: str) -> str:
        return f"{self.settings.params_path}{name}"

    def snapshot(self) -> Snapshot:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._fetched_at >= self.settings.params_cache_seconds:
                self._cached = self._fetch()
                self._fetched_at = now
            return self._cached

    def invalidate(self) -> None:
        with self._lock:
            self._cached = None

    def _fetch(self) -> Snapshot:
        base = defaults()
        values = dict(base.values)
        modified: dict[str, datetime] = {}
        paginator = aws.client("ssm").get_paginator("get_parameters_by_path")
        for page in paginator.paginate(Path=self.settings.params_path, Recursive=False):
            for item in page["Parameters"]:
                name = item["Name"][len(self.settings.params_path) :]
                if name not in SPECS:
                    continue
                try:
                    values[name] = parse(name, item["Value"])
                except ParamError:
                    # A bad value never stops the pipeline: the default stays and the error is logged.
                    from hitl.logs import get_logger

                    get_logger().warning("param_invalid", param=name, value=item["Value"])
                    continue
                modified[name] = item["LastModifiedDate"]
        return Snapshot(values, modified)

    def get_raw(self, name: str) -> str:
        if name not in SPECS:
            raise ParamError(f"unknown parameter {name!r}; known: {', '.join(sorted(SPECS))}")
        ssm = aws.client("ssm")
        try:
            return str(ssm.get_parameter(Name=self._path(name))["Parameter"]["Value"])
        except ssm.exceptions.ParameterNotFound:
            return SPECS[name].default

    def set(self, name: str, value: str) -> None:
        parse(name, value)  # refuse what would not parse
        aws.client("ssm").put_parameter(Name=self._path(name), Value=value, Type="String", Overwrite=True)
        self.invalidate()

    def ensure_defaults(self) -> list[str]:
        """Create missing parameters with their defaults; never overwrite. Returns the names created."""
        ssm = aws.client("ssm")
        created = []
        for name, spec in SPECS.items():
            try:
                ssm.put_parameter(
                    Name=self._path(name), Value=spec.default, Type="String", Overwrite=False, Description=spec.help
                )
                created.append(name)
            except ssm.exceptions.ParameterAlreadyExists:
                pass
        return created
