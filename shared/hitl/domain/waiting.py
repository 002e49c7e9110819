"""Why an image is where it is, in one sentence for ``hitl status``. Pure: every input is an argument."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PipelineState:
    """What the explanation needs to know about the pipeline besides the image itself."""

    serving_version: str | None
    detect_queue_depth: int = 0
    dispatch_queue_depth: int = 0
    labels: int = 0
    minimum_untrained: int = 0


def cold_start_line(state: PipelineState) -> str | None:
    """The status line of cold start, or None once a version serves."""
    if state.serving_version:
        return None
    missing = max(0, state.minimum_untrained - state.labels)
    then = (
        f"{missing} more label(s) before v1 trains"
        if missing
        else "enough labels: v1 trains at the next check (`hitl train --wait` to ask now)"
    )
    return (
        "cold start: no model version serves yet, so every accepted image goes to human labelling "
        f"(route cold_start); {state.labels} labelled, Minimum-Untrained-Images {state.minimum_untrained}: {then}"
    )


def explain(entry: Mapping[str, str], state: PipelineState) -> str:
    """One sentence: what the image waits for, or what became of it."""
    image_state = entry.get("state", "")
    loop_status = entry.get("loop_status", "")
    route = entry.get("route", "")
    if image_state == "rejected":
        return f"rejected: {entry.get('reason', '?')} ({entry.get('detail', '')}); see `hitl rejections`"
    if image_state == "dead_lettered":
        return (
            f"dead-lettered: {entry.get('reason', 'its task kept failing')}; "
            "`hitl dlq` lists it, `hitl dlq redrive` sends it again"
        )
    if image_state == "queued":
        ahead = max(0, state.detect_queue_depth - 1)
        waiting = f"queued for detection behind about {ahead} image(s)" if ahead else "queued for detection"
        if not state.serving_version:
            return f"{waiting}; cold start: it will go to human labelling"
        return waiting
    if image_state == "detected":
        if not route or route == "none":
            return "detected; confident enough, not sent to review"
        if not entry.get("loop_name"):
            return f"detected and routed to review ({route}); dispatch pending ({state.dispatch_queue_depth} queued)"
        if loop_status == "waiting_budget":
            return (
                f"detected and routed to review ({route}); waiting for the review budget "
                "(Max-Human-Reviews-Per-Hour / Max-Open-Human-Loops): it starts when a slot frees, "
                "the most useful waiting images first"
            )
        if loop_status == "InProgress":
            why = "label it from scratch (cold start)" if "cold_start" in route else f"review it ({route})"
            return f"waiting for a reviewer to {why} in the portal; loop {entry['loop_name']}"
        if loop_status == "Completed":
            return f"answered: {entry.get('answer_outcome') or 'recorded'}"
        return f"review loop {entry['loop_name']} ended {loop_status}: {entry.get('answer_outcome', '')}"
    return f"state {image_state or 'unknown'}"
