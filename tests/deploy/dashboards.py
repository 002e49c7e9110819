"""The Grafana dashboards' queries, for the static test here and the live test against a running stack.

    from tests.deploy.dashboards import panel_queries
    for q in panel_queries():          # every target of every panel of every dashboard
        prometheus.query(q.promql)     # Grafana's template variables already replaced

``PanelQuery.expr`` is the expression as stored in the dashboard; ``PanelQuery.promql`` is the same with
Grafana's variables ($__rate_interval, $model_version, ...) replaced so Prometheus can run it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARDS = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"

# What Grafana would put in for its built-in variables at a small time range, and "All" for ours.
DEFAULT_VARIABLES: Mapping[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
    "model_version": ".*",
}
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # file name
    panel: str  # panel title
    ref_id: str
    expr: str  # as stored
    promql: str  # variables replaced

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}: {self.promql}"


def substitute(expr: str, variables: Mapping[str, str] = DEFAULT_VARIABLES) -> str:
    def replace(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in variables:
            raise KeyError(f"unknown dashboard variable ${name} in {expr!r}")
        return variables[name]

    return VARIABLE.sub(replace, expr)


def dashboard_files(directory: Path = DASHBOARDS) -> list[Path]:
    return sorted(directory.glob("*.json"))


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # collapsed rows hold their panels


def panel_queries(directory: Path = DASHBOARDS, variables: Mapping[str, str] = DEFAULT_VARIABLES) -> list[PanelQuery]:
    """Every Prometheus query of every panel of every dashboard in ``directory``."""
    found = []
    for path in dashboard_files(directory):
        board = json.loads(path.read_text())
        for panel in _panels(board.get("panels", [])):
            for target in panel.get("targets", []):
                expr = target.get("expr")
                if not expr or target.get("hide"):
                    continue
                found.append(
                    PanelQuery(
                        path.name, panel.get("title", ""), target.get("refId", ""), expr, substitute(expr, variables)
                    )
                )
    return found


def variable_queries(directory: Path = DASHBOARDS) -> list[tuple[str, str, str]]:
    """(dashboard, variable, query) of every query-type template variable."""
    found = []
    for path in dashboard_files(directory):
        board = json.loads(path.read_text())
        for variable in board.get("templating", {}).get("list", []):
            if variable.get("type") != "query":
                continue
            query = variable.get("query")
            if isinstance(query, dict):
                query = query.get("query", "")
            found.append((path.name, variable["name"], query))
    return found
