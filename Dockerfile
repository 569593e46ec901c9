# syntax=docker/dockerfile:1
# The isvc-operator image. The same image runs the storage init container of model pods
# (`python -m isvc_operator.storage`), so it carries no shell tools beyond the base image's.
#   docker build -t ghcr.io/isvc-operator/isvc-operator:0.1.0 .
# tests/install/test_dockerfile.py replays the pip steps below in a virtualenv and lints this file.

# The Python base; hack/images/build.sh passes one built from Debian packages where no registry is reachable.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
# Only what the wheel is built from: the project metadata and the package.
COPY pyproject.toml README.md ./
COPY operator/isvc_operator/ operator/isvc_operator/
RUN pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels '.[storage]'

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="isvc-operator" \
      org.opencontainers.image.description="Kubernetes operator for InferenceService (serving.isvc.dev)" \
      org.opencontainers.image.source="https://github.com/isvc-operator/isvc-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Wheels only: no index, no compiler, nothing built in this stage.
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir --disable-pip-version-check --no-index --find-links /wheels /wheels/*.whl \
    && rm -rf /wheels
# Non-root, matching the chart's securityContext (runAsUser 65532, read-only root filesystem).
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["isvc-operator"]
CMD ["run", "--liveness", "http://0.0.0.0:8080/healthz"]
