"""The metric names the dashboards and alerts may use, and their labels.

Built from shared/hitl/metrics.py (every metric object defined there) plus the review service's
``hitl_review_*`` metrics, and the labels Prometheus itself attaches to every scraped series.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from prometheus_client.metrics import MetricWrapperBase


@dataclass(frozen=True)
class MetricInfo:
    name: str  # the family name, without _total/_bucket/... suffixes
    kind: str  # counter | gauge | histogram | summary
    labels: frozenset[str] | None  # None: not known here, any label accepted

    def series_names(self) -> set[str]:
        if self.kind == "counter":
            return {f"{self.name}_total", f"{self.name}_created"}
        if self.kind == "histogram":
            return {f"{self.name}_bucket", f"{self.name}_count", f"{self.name}_sum", f"{self.name}_created"}
        if self.kind == "summary":
            return {self.name, f"{self.name}_count", f"{self.name}_sum", f"{self.name}_created"}
        return {self.name}

    def labels_of(self, series: str) -> frozenset[str] | None:
        if self.labels is None:
            return None
        extra = {"le"} if series.endswith("_bucket") else set()
        return self.labels | extra


# The review service's metrics (services/review), as specified for it.
REVIEW_METRICS = (
    MetricInfo("hitl_review_loops_started", "counter", None),
    MetricInfo("hitl_review_answers", "counter", frozenset({"reviewer"})),
    MetricInfo("hitl_review_task_seconds", "histogram", None),
    MetricInfo("hitl_review_loops", "gauge", frozenset({"status"})),
    MetricInfo("hitl_review_events_emitted", "counter", frozenset({"status"})),
    MetricInfo("hitl_review_http_requests", "counter", None),
)

# Labels every scraped series carries: Prometheus' own, the PodMonitor's and the compose scrape config's.
TARGET_LABELS = frozenset({"job", "instance", "app", "namespace", "pod", "container", "endpoint", "service"})
# Series Prometheus makes itself for every target.
SYNTHETIC: dict[str, frozenset[str]] = {
    "up": frozenset(),
    "scrape_duration_seconds": frozenset(),
    "scrape_samples_scraped": frozenset(),
}


def _from_module(module_name: str) -> list[MetricInfo]:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        return []
    found = []
    for value in vars(module).values():
        if isinstance(value, MetricWrapperBase):
            found.append(MetricInfo(value._name, str(value._type), frozenset(value._labelnames)))
    return found


def known_metrics() -> dict[str, MetricInfo]:
    """Series name -> the metric it belongs to, for every series the pipeline exports."""
    infos: dict[str, MetricInfo] = {m.name: m for m in REVIEW_METRICS}
    for module_name in ("hitl.metrics", "services.review.metrics"):
        for info in _from_module(module_name):
            infos[info.name] = info
    series: dict[str, MetricInfo] = {}
    for info in infos.values():
        for name in info.series_names():
            series[name] = info
    return series


def allowed_labels(series: str, catalog: dict[str, MetricInfo]) -> frozenset[str] | None:
    if series in SYNTHETIC:
        return SYNTHETIC[series] | TARGET_LABELS
    own = catalog[series].labels_of(series)
    return None if own is None else own | TARGET_LABELS
