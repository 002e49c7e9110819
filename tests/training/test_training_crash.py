"""A training run killed mid-way (SIGKILL of a real process): its lock expires with it and the next
poll trains again; a live run keeps its lock by extending it. Real Redis and moto's server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import redis as redis_lib

from hitl import aws
from hitl.params import ParameterStore
from hitl.scenes import generate_scenes, upload_set
from hitl.settings import Settings
from hitl.stack import procs
from hitl.training.lock import TrainingLock
from hitl.training.policy import should_train
from hitl.training.trainer import LOCK_TTL_SECONDS, Trainer
from tests.training.test_trainer import add_labels

pytestmark = pytest.mark.integration
PREFIX = "traincrash"


@pytest.fixture
def env(settings: Settings) -> Settings:
    local = settings.model_copy(
        update={"bucket": "hitl-train-crash", "key_prefix": PREFIX, "params_path": f"/{PREFIX}/",
                "params_cache_seconds": 0.0}
    )
    aws.client("s3").create_bucket(Bucket=local.bucket)
    client = redis_lib.Redis.from_url(local.redis_url)
    params = ParameterStore(local)
    params.ensure_defaults()
    params.set("Minimum-Untrained-Images", "4")
    upload_set(generate_scenes("train", 6, seed=0, source_prefix=f"s3://{local.bucket}/seed/"),
               local.s3_uri(local.seed_manifest_key))
    upload_set(generate_scenes("test", 10, seed=0, source_prefix=f"s3://{local.bucket}/test/"),
               local.s3_uri(local.test_manifest_key))
    yield local
    for key in client.scan_iter(f"{PREFIX}:*"):
        client.delete(key)


def test_a_killed_training_run_releases_its_lock_and_is_retried(env: Settings) -> None:
    add_labels(env, 0, 5)
    child_env = {
        **os.environ, "HITL_KEY_PREFIX": PREFIX, "HITL_BUCKET": env.bucket, "HITL_PARAMS_PATH": env.params_path,
        "HITL_REDIS_URL": env.redis_url,
    }
    code = "from hitl.settings import Settings; from hitl.training.trainer import Trainer; Trainer(Settings()).check()"
    child = subprocess.Popen([sys.executable, "-c", code], env=child_env)
    client = redis_lib.Redis.from_url(env.redis_url)
    lock_key = env.key("training", "lock")
    try:
        procs.wait_until(lambda: bool(client.exists(lock_key)) or child.poll() is not None, 120, "training started")
        assert child.poll() is None, "the run ended before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
    # The lock outlives the process by at most one TTL (not an hour)...
    assert 0 < client.pttl(lock_key) <= LOCK_TTL_SECONDS * 1000
    # ...and the run counts as not attempted: once the lock is gone, the next poll trains again.
    counts = Trainer(env).counts()
    assert counts.at_last_attempt == 0
    client.delete(lock_key)  # what the expiry does within LOCK_TTL_SECONDS
    decision = should_train(enabled=True, running=False, counts=counts, minimum_untrained=4)
    assert decision.train, decision.reason
    assert Trainer(env).check().outcome in ("promoted", "rejected")


def test_a_live_run_extends_its_lock(env: Settings) -> None:
    client = redis_lib.Redis.from_url(env.redis_url, decode_responses=True)
    lock = TrainingLock(client, env, ttl_seconds=2)
    lock.acquire()
    try:
        seen: list[int] = []

        def extended() -> bool:
            seen.append(int(client.pttl(lock.key)))  # type: ignore[arg-type]
            return seen[-1] > min(seen) + 50  # its time to live went up again

        with lock.kept_alive(every=0.2):
            procs.wait_until(extended, 5, "the lock extended", interval=0.05)
            assert lock.is_current()
    finally:
        lock.release()
