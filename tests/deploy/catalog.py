"""The metric names the dashboards and alerts may use, and their labels.

Built from the metric objects defined in shared/hitl/metrics.py and services/review/metrics.py (the
exporters themselves, never a copied list), and the labels Prometheus itself attaches to every scraped
series.
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


# Labels every scraped series carries: Prometheus' own, the PodMonitor's and the compose scrape config's.
TARGET_LABELS = frozenset({"job", "instance", "app", "namespace", "pod", "container", "endpoint", "service"})
# Series Prometheus makes itself for every target.
SYNTHETIC: dict[str, frozenset[str]] = {
    "up": frozenset(),
    "scrape_duration_seconds": frozenset(),
    "scrape_samples_scraped": frozenset(),
}


def _from_module(module_name: str) -> list[MetricInfo]:
    """Every metric object the module defines; an import error fails the test that asked."""
    module = importlib.import_module(module_name)
    found = [
        MetricInfo(value._name, str(value._type), frozenset(value._labelnames))
        for value in vars(module).values()
        if isinstance(value, MetricWrapperBase)
    ]
    if not found:
        raise AssertionError(f"{module_name} defines no metrics")
    return found


def known_metrics() -> dict[str, MetricInfo]:
    """Series name -> the metric it belongs to, for every series the pipeline exports."""
    infos: dict[str, MetricInfo] = {}
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
