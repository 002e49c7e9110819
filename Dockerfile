# syntax=docker/dockerfile:1
# One image for every service; each Deployment or compose service picks its entrypoint:
#   python -m services.<detector|dispatcher|trainer|beat|intake|ingestor|monitor|review>
# Runs as an unprivileged user on a read-only root filesystem: everything written goes to /tmp
# (an emptyDir or tmpfs), including Prometheus' multiprocess files in /tmp/prometheus.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: resolve the pinned dependencies and install the project into a virtualenv ------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Runtime dependencies first (pyproject's list, versions from the lock; no dev tools), in their own
# layer: source changes do not reinstall them.
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; print('\\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > runtime-requirements.txt \
    && pip install --requirement runtime-requirements.txt --constraint requirements.lock
COPY README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-deps . \
    && python -m compileall -q /opt/venv/lib

# --- runtime: the virtualenv and nothing else ----------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG UID=10001
RUN groupadd --system --gid ${UID} hitl \
    && useradd --system --uid ${UID} --gid hitl --home-dir /tmp --no-create-home --shell /usr/sbin/nologin hitl
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus \
    HITL_METRICS_PORT=9100 \
    HITL_HEARTBEAT_FILE=/tmp/hitl/heartbeat \
    HITL_READY_FILE=/tmp/hitl/ready \
    HITL_RUN_DIR=/tmp/hitl/run
WORKDIR /tmp
USER ${UID}:${UID}
EXPOSE 9100 8080
# No default service: name one, e.g. `docker run IMAGE python -m services.detector`.
CMD ["hitl", "--help"]
