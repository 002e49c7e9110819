"""Run a Celery worker for one service: metrics, heartbeat, readiness, JSON logs, graceful stop."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def run_worker(
    service: str,
    queues: Sequence[str],
    register_tasks: Callable[[], None],
    concurrency: int | None = None,
    pool: str = "prefork",
) -> None:
    from celery import signals

    from hitl import health, logs, metrics, startup
    from hitl.celery_app import app, init_task_metrics
    from hitl.entry import parse_args
    from hitl.settings import get_settings

    parse_args()
    settings = get_settings()
    startup.require(settings, service)
    logs.configure(service, settings.log_level)
    register_tasks()

    stop_heartbeat = None

    @signals.setup_logging.connect  # type: ignore[untyped-decorator]
    def _logging(**_: object) -> None:
        # Connected, this replaces Celery's own logging setup in the main process and every child.
        logs.configure(service, settings.log_level)

    @signals.worker_init.connect  # type: ignore[untyped-decorator]
    def _init(**_: object) -> None:
        nonlocal stop_heartbeat
        if settings.metrics_port > 0:
            init_task_metrics(app)
            metrics.serve(settings.metrics_port)
        stop_heartbeat = health.start_heartbeat(
            on_beat=lambda: metrics.WORKER_HEARTBEAT.labels(service).set_to_current_time()
        )

    @signals.worker_ready.connect  # type: ignore[untyped-decorator]
    def _ready(**_: object) -> None:
        health.mark_ready(True)

    @signals.worker_shutting_down.connect  # type: ignore[untyped-decorator]
    def _shutting_down(**_: object) -> None:
        health.mark_ready(False)

    @signals.worker_process_init.connect  # type: ignore[untyped-decorator]
    def _child_init(**_: object) -> None:
        # Forked children must not share the parent's HTTP connections.
        from hitl import aws

        aws.reset_clients()

    argv = worker_argv(service, queues, pool, concurrency, settings.log_level)
    try:
        app.worker_main(argv)
    finally:
        if stop_heartbeat is not None:
            stop_heartbeat.set()
        health.mark_ready(False)


def worker_argv(service: str, queues: Sequence[str], pool: str, concurrency: int | None, log_level: str) -> list[str]:
    """Celery's worker arguments. A prefork pool without a concurrency gets the cores the process may
    use: Celery's own default is ``os.cpu_count()``, in a container every core of the host whatever
    its CPU limit."""
    from hitl.cpus import worker_processes

    argv = ["worker", "--queues", ",".join(queues), "--hostname", f"{service}@%h", "--pool", pool]
    argv += ["--without-gossip", "--without-mingle", "--loglevel", log_level]
    if concurrency or pool == "prefork":
        argv += ["--concurrency", str(worker_processes(concurrency))]
    return argv
