# syntax=docker/dockerfile:1
# The MNEMOS image: Ray + the mnemos package. Every Ray pod runs it (head, workers, the RayJob
# submitter, the chart's hook job), and KubeRay's autoscaler sidecar reuses it.
#
#   docker build -t ghcr.io/n1x-mnemos/mnemos:0.1.0 .
#   docker build --build-arg EXTRAS=llm,embed -t ghcr.io/n1x-mnemos/mnemos:0.1.0-llm .
#
# The base image's Ray version must match the RayCluster's rayVersion (kuberay/*.yaml, the chart).
ARG RAY_IMAGE=rayproject/ray:2.60.0-py311
FROM ${RAY_IMAGE}

# Optional extras of the mnemos package, comma-separated (llm, embed, vault, otlp).
ARG EXTRAS=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAY_USAGE_STATS_ENABLED=0

# rayproject/ray runs as the non-root user `ray` (uid 1000, gid 100); stay that user.
USER 1000:100

# Install from a throw-away copy of the source, so the working folder holds only runtime data.
COPY --chown=1000:100 pyproject.toml README.md /tmp/mnemos-src/
COPY --chown=1000:100 mnemos /tmp/mnemos-src/mnemos
RUN cd /tmp/mnemos-src \
    && pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}" \
    && cd / && rm -rf /tmp/mnemos-src \
    && python -c "import mnemos; print('mnemos', mnemos.__version__)"

# Pipelines and deployment files, relative to the working folder (the RayJob's working_dir).
WORKDIR /home/ray/mnemos
COPY --chown=1000:100 pipelines ./pipelines
COPY --chown=1000:100 deployments/serve ./deployments/serve
COPY --chown=1000:100 deployments/local ./deployments/local

# Ray's ports: GCS, dashboard, client, RELAY (Serve), metrics.
EXPOSE 6379 8265 10001 8080 8090
CMD ["python", "-m", "mnemos", "--help"]
