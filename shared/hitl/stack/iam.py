"""IAM enforced on the local stack (``HITL_STACK_ENFORCE_IAM``): each service signs with its own
IAM user, whose only policy is its ``deploy/iam/<service>.json`` rendered for this stack.

moto's server checks IAM once its count of unauthenticated requests is used up
(``INITIAL_NO_AUTH_ACTION_COUNT``; ``POST /moto-api/reset-auth`` sets it). The users and keys are
created while it is still open, then it is set to 0: from there on every request must be signed by
a known key and allowed by that user's policies, and anything else answers AccessDenied.

What moto checks, and how the policies are rendered for it (the actions are never widened):
- S3 and SQS requests are checked against the object/bucket/queue ARN, as on AWS;
- other services' requests (SSM, EventBridge, Rekognition, ...) and SQS calls that name no queue
  URL (GetQueueUrl, CreateQueue) are checked against the resource ``*``, so those statements get
  ``Resource: *`` here;
- moto evaluates no request context (``s3:prefix``, ...): a statement's Condition would deny every
  request, so Conditions are dropped here.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from hitl.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
POLICY_DIR = ROOT / "deploy" / "iam"
MOTO_ACCOUNT = "123456789012"
SERVICES = (
    "bootstrap",
    "intake",
    "detector",
    "dispatcher",
    "ingestor",
    "reconciler",
    "trainer",
    "beat",
    "monitor",
    "review",
)
ADMIN = "operator"  # the stack's user for people, tests and the CLI: every action
# SQS actions that carry no queue URL: moto checks them against "*".
SQS_WITHOUT_QUEUE = {"sqs:GetQueueUrl", "sqs:CreateQueue", "sqs:ListQueues"}


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}


def policy_values(settings: Settings, region: str) -> dict[str, str]:
    """The ${Placeholders} of deploy/iam/*.json for this stack (moto's account)."""
    return {
        "AccountId": MOTO_ACCOUNT,
        "Region": region,
        "Bucket": settings.bucket,
        "EventBus": settings.event_bus,
        "FlowDefinitionName": settings.review_default_flow_name,
        "RekognitionProjectName": "hitl",
        "SageMakerEndpointName": settings.sagemaker_endpoint_name or "hitl-detector",
        "SageMakerRoleName": "hitl-sagemaker",
        "A2IRoleName": "hitl-a2i-execution",
    }


def render_policy(service: str, values: dict[str, str], policy_dir: Path | None = None) -> dict[str, Any]:
    import re

    text = ((policy_dir or POLICY_DIR) / f"{service}.json").read_text()
    placeholder = re.compile(r"\$\{([A-Za-z][A-Za-z0-9]*)\}")
    missing = sorted(set(placeholder.findall(text)) - values.keys())
    if missing:
        raise KeyError(f"{service}.json: no value for {', '.join(missing)}")
    rendered: dict[str, Any] = json.loads(placeholder.sub(lambda m: values[m.group(1)], text))
    return rendered


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement.get("Action", [])
    return [actions] if isinstance(actions, str) else list(actions)


def for_moto(policy: dict[str, Any]) -> dict[str, Any]:
    """The policy as moto can evaluate it (module docstring): same actions, resources where moto
    checks them, ``*`` where it checks ``*``, no Conditions."""
    statements = []
    for original in policy["Statement"]:
        statement = copy.deepcopy(original)
        statement.pop("Condition", None)
        exact = [a for a in _actions(statement) if a.startswith(("s3:", "sqs:")) and a not in SQS_WITHOUT_QUEUE]
        star = [a for a in _actions(statement) if a not in exact]
        if exact:
            statements.append({**statement, "Action": exact})
        if star:
            statements.append({**statement, "Sid": f"{statement.get('Sid', 'S')}Any", "Action": star, "Resource": "*"})
    return {**policy, "Statement": statements}


def create_users(
    moto_url: str, settings: Settings, region: str, policy_dir: Path | None = None
) -> dict[str, Credentials]:
    """One IAM user per service with its rendered policy, and the operator user; their keys."""
    iam = boto3.client(
        "iam",
        endpoint_url=moto_url,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's open phase
    )
    values = policy_values(settings, region)
    documents = {service: for_moto(render_policy(service, values, policy_dir)) for service in SERVICES}
    documents[ADMIN] = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    credentials = {}
    for name, document in documents.items():
        user = f"hitl-{name}"
        with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
            iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName=f"hitl-{name}", PolicyDocument=json.dumps(document))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        credentials[name] = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
    return credentials


def enforce(moto_url: str) -> None:
    """From now on moto's server answers only requests its IAM policies allow."""
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - loopback moto
        f"{moto_url}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback moto
        if response.status != 200:
            raise RuntimeError(f"moto did not turn IAM on: {response.status}")


def write_a2i_keys(path: Path, credentials: dict[str, Credentials]) -> Path:
    """The review service (the local A2I) accepts the services' IAM keys: key id -> secret, 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    os.chmod(path, 0o600)
    path.write_text(json.dumps({c.access_key_id: c.secret_access_key for c in credentials.values()}))
    return path


def service_environments(settings: Settings, moto_url: str, region: str, run_dir: Path) -> dict[str, dict[str, str]]:
    """Create the users, turn IAM on, and return each process's environment additions: its own
    keys (``bootstrap``, each service, ``operator`` for the stack's users), and for the review
    service the file of keys it accepts as the local A2I."""
    credentials = create_users(moto_url, settings, region, settings.stack_iam_policy_dir)
    enforce(moto_url)
    keys_file = write_a2i_keys(run_dir / "iam" / "a2i-keys.json", credentials)
    environments = {name: c.env() for name, c in credentials.items()}
    # Who may change flow definitions: the operator (`hitl review flows`, `hitl dataset import`) and the
    # trainer (a promoted version's labels join the flow).
    admins = sorted(credentials[name].access_key_id for name in ("operator", "trainer") if name in credentials)
    environments["review"] = {
        **environments["review"],
        "HITL_REVIEW_API_KEYS_FILE": str(keys_file),
        "HITL_REVIEW_ADMIN_ACCESS_KEYS": json.dumps(admins),
    }
    return environments
