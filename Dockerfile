# syntax=docker/dockerfile:1
# One image for every service; each Deployment or compose service picks its entrypoint:
#   python -m services.<detector|dispatcher|beat|intake|ingestor|monitor|review>,
#   python -m services.ingestor.reconciler, and `hitl stack bootstrap` (one-shot).
# Targets (`make image` builds all three; deploy/README.md):
#   runtime (default)  hitl-pipeline          the project's runtime dependencies only (pyproject `dependencies`)
#   trainer            hitl-pipeline-trainer  + the `train` extra (scikit-learn) for python -m services.trainer
#   local              hitl-pipeline-local    + the `local` extra (moto's server) for compose and the local overlay
# Runs as an unprivileged user on a read-only root filesystem: everything written goes to /tmp
# (an emptyDir or tmpfs), including Prometheus' multiprocess files in /tmp/prometheus. Nothing at run
# time needs a shell: every command and probe is `python -m …`, `hitl …` or `moto_server …`.

# Any Debian bookworm with python3 (3.11) and python3-venv; `make image` makes one from Debian's
# archive (mmdebstrap) when this cannot be pulled.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the pinned runtime dependencies and the project in a virtualenv -----------------------
FROM ${PYTHON_IMAGE} AS build
# PIP_CERT: downloads trust the system bundle (a build behind a TLS-inspecting proxy mounts the
# host's /etc/ssl/certs over it).
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PYTHONDONTWRITEBYTECODE=1
# The image's venv gets no pip: a separate installer venv installs into it (`pip --python`).
RUN python -m venv --without-pip /opt/venv \
    && python -m venv /opt/installer
ENV INSTALL="/opt/installer/bin/pip --python /opt/venv/bin/python install --no-warn-script-location"
WORKDIR /src
# Dependencies first, in their own layer: source changes do not reinstall them. The set comes from
# pyproject's `dependencies`, every version from requirements.lock.
COPY pyproject.toml requirements.lock ./
COPY deploy/image/requirements.py ./deploy/image/requirements.py
RUN python deploy/image/requirements.py pyproject.toml > runtime-requirements.txt \
    && $INSTALL --requirement runtime-requirements.txt --constraint requirements.lock
COPY README.md ./
COPY shared ./shared
COPY services ./services
# pip compiles every module it installs: nothing is compiled (or written) at run time.
RUN $INSTALL --no-deps .

# --- build-trainer / build-local: the same virtualenv plus one extra --------------------------------
FROM build AS build-trainer
RUN python deploy/image/requirements.py pyproject.toml train > train-requirements.txt \
    && $INSTALL --requirement train-requirements.txt --constraint requirements.lock

FROM build AS build-local
RUN python deploy/image/requirements.py pyproject.toml local > local-requirements.txt \
    && $INSTALL --requirement local-requirements.txt --constraint requirements.lock

# --- base: the unprivileged user and the environment every target shares --------------------------
FROM ${PYTHON_IMAGE} AS base
RUN groupadd --system --gid 10001 hitl \
    && useradd --system --uid 10001 --gid hitl --home-dir /tmp --no-create-home --shell /usr/sbin/nologin hitl
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus \
    HITL_METRICS_PORT=9100 \
    HITL_HEARTBEAT_FILE=/tmp/hitl/heartbeat \
    HITL_READY_FILE=/tmp/hitl/ready \
    HITL_RUN_DIR=/tmp/hitl/run
WORKDIR /tmp
EXPOSE 9100 8080

# --- trainer: python -m services.trainer ------------------------------------------------------------
FROM base AS trainer
COPY --from=build-trainer /opt/venv /opt/venv
USER 10001:10001
CMD ["hitl", "--help"]

# --- local: moto's server for compose and the local Kubernetes overlay (development only) -----------
FROM base AS local
COPY --from=build-local /opt/venv /opt/venv
USER 10001:10001
CMD ["moto_server", "-H", "0.0.0.0", "-p", "5000"]

# --- runtime (default): every other service --------------------------------------------------------
FROM base AS runtime
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
# No default service: name one, e.g. `docker run IMAGE python -m services.detector`.
CMD ["hitl", "--help"]
