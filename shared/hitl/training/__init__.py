"""Retraining: when to train, one run at a time, the deployment gate, and the training backends."""
