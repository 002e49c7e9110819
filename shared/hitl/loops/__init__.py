"""Human loops end to end: dispatch, ingestion of status events, reconciliation, audits."""
