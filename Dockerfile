# LogFlow image: one image for every LogFlow process. The command picks the role:
#   docker run logflow:local                  -> `logflow serve` (embedded all-in-one, data in /data)
#   docker run logflow:local api | processor  -> the distributed shape (see docker-compose.yml)
# Build: docker build -t logflow:local .      Docs: docs/docker.md

# ---- builder: a wheel of the project, installed with the `distributed` extra into /opt/venv ----
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/venv

# Only what the wheel needs (pyproject names README.md as the readme); see .dockerignore.
COPY pyproject.toml README.md ./
COPY src ./src

# Every dependency (confluent-kafka, psycopg[binary], uvloop, ...) ships manylinux wheels for
# CPython 3.11 on amd64 and arm64, so no compiler is needed in this stage.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --no-cache-dir "$(echo /wheels/logflow-*.whl)[distributed]"

# ---- runtime: slim Python, the venv, a non-root user ----
FROM python:3.11-slim

LABEL org.opencontainers.image.title="LogFlow" \
      org.opencontainers.image.description="Log aggregation: durable ingest, full-text search, metrics and alerting" \
      org.opencontainers.image.licenses="MIT"

RUN groupadd --gid 10001 logflow \
 && useradd --uid 10001 --gid logflow --home-dir /home/logflow --create-home --shell /usr/sbin/nologin logflow \
 && mkdir -p /data \
 && chown logflow:logflow /data

COPY --from=builder /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOGFLOW_DATA_DIR=/data \
    LOGFLOW_HOST=0.0.0.0 \
    LOGFLOW_PORT=8000

# /data is created and owned by `logflow` above, so a fresh named volume mounted here inherits
# that owner. Embedded queue segments, SQLite day partitions and status files live here.
VOLUME /data
# Settings come from LOGFLOW_* variables; a logflow.toml here (or LOGFLOW_CONFIG) is read too.
WORKDIR /home/logflow
USER logflow:logflow

# HTTP (API and HTTP ingest protocols), syslog TCP+UDP, GELF UDP.
EXPOSE 8000 5514/tcp 5514/udp 12201/udp

# slim has no curl: ask /health with the standard library. Exit 1 on 503 (unhealthy) or no answer.
# Only the HTTP roles (serve, api) answer; docker-compose.yml disables this check for the others.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('LOGFLOW_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["logflow"]
CMD ["serve"]
