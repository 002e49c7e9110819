from __future__ import annotations

import pytest

from hitl.params import SPECS, ParamError, defaults, parse


def test_defaults_are_the_reference_values() -> None:
    snap = defaults()
    assert snap["Minimum-Label-Detection-Confidence"] == 70.0
    assert snap["Human-Sampling-Interval"] == 1000
    assert snap["Minimum-F1-Score"] == 0.8
    assert snap["Minimum-Untrained-Images"] == 10
    assert snap["Enable-A2I-Workflow"] is True
    assert snap.label_overrides == {}
    assert snap.sampling_epoch == "default"


def test_every_default_parses_to_its_kind() -> None:
    assert len(SPECS) == 15
    parsed = {name: parse(name, spec.default) for name, spec in SPECS.items()}
    assert {name: type(value) for name, value in parsed.items()} == {name: spec.kind for name, spec in SPECS.items()}
    assert parsed == {
        "Enable-Automatic-Training": True,
        "Automatic-Training-Poll-Frequency": 600,
        "Minimum-Untrained-Images": 10,
        "Minimum-F1-Score": 0.8,
        "Minimum-Inference-Units": 1,
        "Minimum-Label-Detection-Confidence": 70.0,
        "Enable-A2I-Workflow": True,
        "Enable-Automatic-Human-Sampling": True,
        "Automatic-Human-Sampling-Frequency": 600,
        "Human-Sampling-Interval": 1000,
        "Label-Confidence-Overrides": {},
        "Routing-Strategy": "threshold",
        "Max-Human-Reviews-Per-Hour": 0,
        "Max-Open-Human-Loops": 0,
        "Target-Auto-Accept-Precision": 0.95,
    }


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [
        ("Enable-A2I-Workflow", "False", False),
        ("Enable-A2I-Workflow", " true ", True),
        ("Human-Sampling-Interval", "25", 25),
        ("Minimum-Label-Detection-Confidence", "62.5", 62.5),
        ("Label-Confidence-Overrides", '{"face": 80}', {"face": 80.0}),
        ("Routing-Strategy", " Diverse-Uncertainty ", "diverse-uncertainty"),
        ("Max-Human-Reviews-Per-Hour", "120", 120),
        ("Target-Auto-Accept-Precision", "0.9", 0.9),
    ],
)
def test_typed_values(name: str, raw: str, value: object) -> None:
    assert parse(name, raw) == value


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("Enable-A2I-Workflow", "yes"),
        ("Human-Sampling-Interval", "ten"),
        ("Label-Confidence-Overrides", '["face"]'),
        ("Label-Confidence-Overrides", '{"face": "high"}'),
        ("No-Such-Parameter", "1"),
        ("Routing-Strategy", "smart"),
        ("Max-Open-Human-Loops", "-1"),
        ("Target-Auto-Accept-Precision", "1.0"),
    ],
)
def test_bad_values_are_refused_with_the_name(name: str, raw: str) -> None:
    with pytest.raises(ParamError, match=name):
        parse(name, raw)
