# The bidder image: runtime dependencies only (pinned by requirements.lock), config and models baked
# in as defaults (Kubernetes mounts bidder_configs/ from a ConfigMap over DSP_CONFIGS).
#   docker build -t dsp-bidder:$(git rev-parse --short HEAD) .
#   docker run --rm -p 8080:8080 -e REDIS_URL=redis://host.docker.internal:6379/0 dsp-bidder:TAG
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY dsp ./dsp
# The lock pins every extra; as constraints it pins only what the runtime actually installs.
RUN python -m venv /opt/venv && /opt/venv/bin/pip install -c requirements.lock .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH \
    DSP_HOST=0.0.0.0 DSP_PORT=8080 DSP_CONFIGS=/app/bidder_configs DSP_MODELS=/app/models \
    PROMETHEUS_MULTIPROC_DIR=/tmp/dsp-prom
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin dsp
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY bidder_configs ./bidder_configs
COPY models ./models
USER 10001
# 8080: the bid port. 9090: the admin port (/metrics, /admin/*), bound to 127.0.0.1 unless
# DSP_ADMIN_HOST says otherwise, which then requires DSP_ADMIN_TOKEN (docs/operations.md).
EXPOSE 8080 9090
# Liveness of the process (readiness, /readyz, also needs Redis: leave that to the orchestrator).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('DSP_PORT', '8080') + '/healthz', timeout=2)"]
ENTRYPOINT ["dsp"]
CMD ["serve"]
