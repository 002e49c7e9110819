"""A flow's labels follow the dataset: after an import or the promotion of a version that knows new
labels, the review flow offers them too, so reviewers can always answer with every label the model
knows. Labels are only added, never removed (an open task may still show an old one).

Only where the review service's flows API answers (the local stack, or a deployment of it); Amazon
A2I flow definitions cannot be changed, so elsewhere this logs and does nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hitl.logs import get_logger
from hitl.settings import Settings

log = get_logger("hitl.flow_labels")


def labels_of(lines: Iterable[Mapping[str, Any] | str]) -> list[str]:
    """Every label named by these manifest lines (boxes' classes or image labels)."""
    from hitl.domain.manifest import DetectionLine, parse_line

    found: set[str] = set()
    for raw in lines:
        try:
            line = parse_line(raw)  # type: ignore[arg-type]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(line, DetectionLine):
            found.update(name for name, _ in line.boxes())
        else:
            found.add(line.label)
    return sorted(found)


def follow(settings: Settings, labels: list[str], why: str) -> list[str] | None:
    """Add ``labels`` to the pipeline's flow; the flow's labels after, or None if it could not be changed."""
    if not settings.flow_labels_follow_dataset or not labels:
        return None
    from hitl.review.flow_admin import update_flow_labels

    try:
        after = update_flow_labels(labels, settings=settings)
    except Exception as exc:  # noqa: BLE001 - the labels are stored either way; the flow is a convenience
        log.warning("flow_labels_not_updated", why=why, labels=labels, error=str(exc)[:300])
        return None
    log.info("flow_labels_updated", why=why, added=labels, labels=after)
    return after
