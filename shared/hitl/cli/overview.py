"""What ``hitl status`` says about the pipeline as a whole and about a waiting image."""

from __future__ import annotations

from typing import Any

from hitl.domain.waiting import PipelineState, cold_start_line
from hitl.settings import Settings


def pipeline_state(settings: Settings) -> PipelineState:
    from hitl.adapters.redis_index import connect
    from hitl.loops.dataset import LabelledDataset
    from hitl.model.registry import ModelRegistry
    from hitl.params import ParameterStore

    redis = connect(settings.redis_url)
    dataset = LabelledDataset(settings, client=redis)
    return PipelineState(
        serving_version=ModelRegistry(settings).serving_version(),
        detect_queue_depth=int(redis.llen("detect")),  # type: ignore[arg-type]
        dispatch_queue_depth=int(redis.llen("dispatch")),  # type: ignore[arg-type]
        labels=int(redis.scard(dataset.examples_key)),  # type: ignore[arg-type]
        minimum_untrained=int(ParameterStore(settings).snapshot()["Minimum-Untrained-Images"]),
    )


def overview(settings: Settings) -> dict[str, Any]:
    """The pipeline in a few facts: serving version (or cold start), labels, queues, dead letters."""
    from hitl.adapters.redis_index import connect
    from hitl.celery_app import QUEUES

    state = pipeline_state(settings)
    redis = connect(settings.redis_url)
    images = int(redis.zcard(settings.key("images")))  # type: ignore[arg-type]
    dead = {q: int(redis.llen(settings.key("dlq", q))) for q in QUEUES}  # type: ignore[arg-type]
    result: dict[str, Any] = {
        "serving_version": state.serving_version,
        "cold_start": state.serving_version is None,
        "images": images,
        "labels": state.labels,
        "minimum_untrained_images": state.minimum_untrained,
        "queued": {"detect": state.detect_queue_depth, "dispatch": state.dispatch_queue_depth},
        "dead_letters": {q: n for q, n in dead.items() if n},
        "next": next_step(state, images, sum(dead.values())),
    }
    line = cold_start_line(state)
    if line:
        result["cold_start_note"] = line
    return result


def next_step(state: PipelineState, images: int, dead_letters: int) -> str:
    """What a user does next, from where the pipeline is."""
    if dead_letters:
        return "dead letters wait: `hitl dlq` lists them, `hitl dlq redrive` sends them again"
    if not state.serving_version and not images and not state.labels:
        return (
            "nothing yet: `hitl dataset import DIR --format coco|yolo|voc|labelstudio|manifest` to bring labels, "
            "or `hitl submit DIR` and label the images in the portal ($HITL_REVIEW_URL)"
        )
    if not state.serving_version:
        return "label the waiting images in the portal ($HITL_REVIEW_URL); v1 trains once enough labels exist"
    return "`hitl submit DIR` to detect more images; `hitl models list` for versions and F1"
