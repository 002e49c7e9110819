"""Names and ARNs exactly as botocore's ``sagemaker-a2i-runtime`` model constrains them."""

from __future__ import annotations

import re
from collections.abc import Mapping

from hitl.review import timefmt
from hitl.review.errors import ValidationError

LOOP_NAME_RE = re.compile(r"^[a-z0-9](-*[a-z0-9])*$")
LOOP_NAME_MAX = 63
FLOW_ARN_RE = re.compile(r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:flow-definition/.*")
LOOP_ARN_RE = re.compile(r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:human-loop/.*")
ARN_MAX = 1024
MAX_RESULTS_RANGE = (1, 100)
SORT_ORDERS = ("Ascending", "Descending")
CONTENT_CLASSIFIERS = ("FreeOfPersonallyIdentifiableInformation", "FreeOfAdultContent")


def loop_name(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError("HumanLoopName is required")
    if len(value) > LOOP_NAME_MAX or not LOOP_NAME_RE.fullmatch(value):
        raise ValidationError(
            f"1 validation error detected: Value '{value[:80]}' at 'humanLoopName' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: ^[a-z0-9](-*[a-z0-9])*$ "
            "and have length between 1 and 63"
        )
    return value


def flow_definition_arn(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError("FlowDefinitionArn is required")
    if len(value) > ARN_MAX or not FLOW_ARN_RE.fullmatch(value):
        raise ValidationError(
            f"1 validation error detected: Value '{value[:200]}' at 'flowDefinitionArn' failed to "
            "satisfy constraint: Member must satisfy regular expression pattern: "
            "arn:aws[a-z\\-]*:sagemaker:[a-z0-9\\-]*:[0-9]{12}:flow-definition/.*"
        )
    return value


def flow_name(value: object) -> str:
    """A FlowDefinitionName as SageMaker constrains it (the loop-name pattern, 1-63 characters)."""
    if not isinstance(value, str) or not value:
        raise ValidationError("FlowDefinitionName is required")
    if len(value) > LOOP_NAME_MAX or not LOOP_NAME_RE.fullmatch(value):
        raise ValidationError(
            f"FlowDefinitionName '{value[:80]}' must match ^[a-z0-9](-*[a-z0-9])*$ and have length between 1 and 63"
        )
    return value


def flow_name_of(arn: str) -> str:
    return arn.split(":flow-definition/", 1)[1]


def flow_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:sagemaker:{region}:{account}:flow-definition/{name}"


def loop_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:sagemaker:{region}:{account}:human-loop/{name}"


def max_results(value: str | None) -> int:
    if value is None or value == "":
        return MAX_RESULTS_RANGE[1]
    try:
        parsed = int(value)
    except ValueError:
        raise ValidationError("MaxResults must be an integer") from None
    low, high = MAX_RESULTS_RANGE
    if not low <= parsed <= high:
        raise ValidationError(f"MaxResults must be between {low} and {high}")
    return parsed


def sort_order(value: str | None) -> str:
    if value is None or value == "":
        return "Descending"
    if value not in SORT_ORDERS:
        raise ValidationError("SortOrder must be one of Ascending, Descending")
    return value


def content_classifiers(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, dict) or not isinstance(value.get("ContentClassifiers"), list):
        raise ValidationError("DataAttributes.ContentClassifiers must be a list")
    found = value["ContentClassifiers"]
    if len(found) > 256 or any(c not in CONTENT_CLASSIFIERS for c in found):
        raise ValidationError(f"ContentClassifiers members must be in {list(CONTENT_CLASSIFIERS)}")
    return [str(c) for c in found]


def creation_time_bounds(params: Mapping[str, str]) -> tuple[float, float]:
    """The exclusive ``CreationTimeAfter`` / ``CreationTimeBefore`` filters of a List call, as an
    inclusive range of epoch milliseconds (unbounded where absent)."""
    low, high = float("-inf"), float("inf")
    for bound in ("CreationTimeAfter", "CreationTimeBefore"):
        value = params.get(bound)
        if value:
            try:
                ms = timefmt.epoch_ms(timefmt.parse(value))
            except ValueError:
                raise ValidationError(f"{bound} must be an ISO 8601 timestamp") from None
            if bound == "CreationTimeAfter":
                low = max(low, ms + 1)
            else:
                high = min(high, ms - 1)
    return low, high
