# syntax=docker/dockerfile:1
# Escalator image: one image for every process (`escalator worker`, `escalator ingest`,
# `escalator sink redis|webhook`, `escalator board`). Build: docker build -t escalator/escalator:0.1.0 .
# The package carries its data (board page, Avro schemas, default policy): tests/deploy/
# test_dockerfile.py builds the wheel from exactly what is copied below and checks it.
# Both stages use the same pinned base, so the venv built in the first runs in the second.
# The hot modules (engine, processor) are compiled with mypyc in the builder (gcc and mypy there
# only: the worker is 25-55% faster, bench/pipeline.py --compiled-cost); every runtime dependency
# is installed from a binary wheel (--only-binary), and no compiler is in the final image.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && python -m pip install setuptools==84.2.1 wheel==0.48.0 mypy==2.4.1 \
    && python -m venv /opt/venv
COPY pyproject.toml setup.py README.md ./
COPY streams ./streams
COPY schemas ./schemas
COPY connectors ./connectors
# 1) the escalator wheel, its engine compiled (setup.py); 2) install it into the venv with
# every dependency as a prebuilt wheel (fails rather than compiling anything); 3) fail the
# build unless the installed engine imports compiled.
RUN ESCALATOR_COMPILE=mypyc python -m pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --only-binary=:all: /wheels/escalator-*.whl \
    && /opt/venv/bin/pip uninstall -y pip setuptools wheel \
    && /opt/venv/bin/escalator --help >/dev/null \
    && /opt/venv/bin/escalator version --expect-compiled

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="escalator" \
      org.opencontainers.image.description="SLA escalation pipeline for contact centers (stream processing on Kafka)"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    ESCALATOR_DATA_DIR=/var/lib/escalator
# Non-root user 10001 (matches the Helm chart's securityContext); state and config dirs.
RUN groupadd --system --gid 10001 escalator \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
       --shell /usr/sbin/nologin escalator \
    && mkdir -p /var/lib/escalator /etc/escalator \
    && chown 10001:10001 /var/lib/escalator
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
WORKDIR /var/lib/escalator
# worker web (/healthz /readyz /metrics), board page, ingest webhooks, sink metrics
EXPOSE 6066 8070 8080 9108
ENTRYPOINT ["escalator"]
CMD ["--help"]
