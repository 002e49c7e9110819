"""A small PromQL reader: the metric names and label names an expression uses.

Not a parser (promtool and Prometheus check syntax); it only finds, in an expression that parses,
which series it selects with which label matchers, and which labels its grouping clauses name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

AGGREGATORS = {
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
}
FUNCTIONS = {
    "abs",
    "absent",
    "absent_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_sum",
    "holt_winters",
    "double_exponential_smoothing",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "ln",
    "log2",
    "log10",
    "minute",
    "month",
    "predict_linear",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sort",
    "sort_desc",
    "sort_by_label",
    "sort_by_label_desc",
    "sqrt",
    "time",
    "timestamp",
    "vector",
    "year",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "quantile_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "last_over_time",
    "present_over_time",
    "mad_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "cos",
    "cosh",
    "sin",
    "sinh",
    "tan",
    "tanh",
    "deg",
    "rad",
    "pi",
}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"}

TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<matchers>\{(?:"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|[^}])*\})
  | (?P<duration>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)
  | (?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
MATCHER = re.compile(
    r"""\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)\s*,?"""
)


@dataclass
class Usage:
    selectors: list[tuple[str, frozenset[str]]] = field(default_factory=list)  # (metric, matcher labels)
    grouping_labels: set[str] = field(default_factory=set)

    @property
    def metrics(self) -> set[str]:
        return {name for name, _ in self.selectors}


def _matcher_labels(block: str) -> tuple[str | None, set[str]]:
    body = block[1:-1]
    labels: set[str] = set()
    name: str | None = None
    pos = 0
    while pos < len(body):
        if not body[pos:].strip():
            break
        m = MATCHER.match(body, pos)
        if not m:
            raise ValueError(f"cannot read label matchers {block!r}")
        if m.group(1) == "__name__":
            name = m.group(3)[1:-1] if m.group(2) == "=" else None
        else:
            labels.add(m.group(1))
        pos = m.end()
    return name, labels


def _is_call(name: str, following: str) -> bool:
    """A function or aggregation, as opposed to a metric that happens to share its name."""
    return (name in AGGREGATORS or name in FUNCTIONS) and (following == "(" or following.lower() in ("by", "without"))


def usage(expr: str) -> Usage:
    tokens = [(m.lastgroup, m.group()) for m in TOKEN.finditer(expr) if m.lastgroup != "ws"]
    found = Usage()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else (None, "")
        if kind == "ident":
            lowered = text.lower()
            if lowered in GROUPING:
                if nxt[1] == "(":
                    j = i + 2
                    while j < len(tokens) and tokens[j][1] != ")":
                        if tokens[j][0] == "ident":
                            found.grouping_labels.add(tokens[j][1])
                        j += 1
                    i = j + 1
                    continue
            elif lowered in KEYWORDS or _is_call(text, nxt[1]):
                pass
            else:
                labels: set[str] = set()
                if nxt[0] == "matchers":
                    _, labels = _matcher_labels(nxt[1])
                    i += 1
                found.selectors.append((text, frozenset(labels)))
        elif kind == "matchers":
            name, labels = _matcher_labels(text)
            if name is None:
                raise ValueError(f"selector without a metric name in {expr!r}")
            found.selectors.append((name, frozenset(labels)))
        i += 1
    return found
