"""The human review domain behind ``services/review``: an A2I-runtime-compatible loop lifecycle.

Pure parts (validation, state machine, assignment, output and event shapes, pagination) are
separate from the two adapters (:mod:`.store` for Redis, :mod:`.publisher` for S3 and EventBridge);
:mod:`.service` wires them into the operations the HTTP layer exposes.
"""
