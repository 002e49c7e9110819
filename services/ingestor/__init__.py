"""Ingestor: A2I status-change events from SQS (fed by EventBridge) → labelled data and audits."""
