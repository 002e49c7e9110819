"""Dispatcher worker: routed detections → human loops (Celery queue ``dispatch``)."""
