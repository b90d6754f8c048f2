# syntax=docker/dockerfile:1
#
# Liya Engine BYOK service image.
#
#   docker build -t liya-engine:0.1.0 .
#   docker run --rm -p 50051:50051 \
#     -e LIYA_MASTER_KEYS="$(docker run --rm liya-engine:0.1.0 keys generate)" \
#     -e LIYA_JWT_HS256_SECRET=... -e LIYA_DATABASE_URL=postgresql+asyncpg://... \
#     liya-engine:0.1.0
#
# Two stages: the build stage installs the project and its pinned dependencies
# into a virtual environment; the final stage copies only that environment onto
# a fresh slim base and runs as an unprivileged user. Every dependency ships
# binary wheels for linux/amd64 and linux/arm64, so no compiler is needed; if a
# future dependency does not, install build-essential in the build stage only.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN python -m venv /opt/liya-engine \
 && /opt/liya-engine/bin/pip install --upgrade pip==26.3

WORKDIR /src
# Only what the packages are built from (README.md is the server's readme;
# clients/ is the liya-engine-client distribution the server depends on).
COPY pyproject.toml README.md ./
COPY server/ server/
COPY clients/ clients/
# A regular (non-editable) install without the dev extras, the client
# distribution and the server in one pip command (the server pins
# liya-engine-client==0.1.0, which ./clients provides); pip compiles the
# bytecode here, so the read-only root filesystem at run time needs no writes.
RUN /opt/liya-engine/bin/pip install ./clients . \
 && /opt/liya-engine/bin/liya-engine --help > /dev/null


FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="liya-engine" \
      org.opencontainers.image.description="Liya Engine BYOK gRPC service"

# A fixed, unprivileged uid/gid (Kubernetes runAsNonRoot checks the number).
# Its working directory is the only place it may write: the default SQLite
# database lands there when no LIYA_DATABASE_URL is set (fine for a quick
# `docker run`; production uses PostgreSQL).
RUN groupadd --system --gid 10001 liya \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /var/lib/liya-engine --shell /usr/sbin/nologin liya \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/liya-engine

COPY --from=build /opt/liya-engine /opt/liya-engine

ENV PATH=/opt/liya-engine/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LIYA_LISTEN_ADDRESS=0.0.0.0:50051

WORKDIR /var/lib/liya-engine
USER 10001:10001

# gRPC (health and reflection included). Prometheus metrics are off unless
# LIYA_METRICS_ADDRESS is set (the Kubernetes base uses 0.0.0.0:9090).
EXPOSE 50051

# The server stops on SIGTERM: health turns NOT_SERVING, new calls are
# refused and in-flight calls get LIYA_SHUTDOWN_GRACE_SECONDS to finish.
# No HEALTHCHECK: orchestrators probe grpc.health.v1.Health directly.
STOPSIGNAL SIGTERM
ENTRYPOINT ["liya-engine"]
CMD ["serve"]
