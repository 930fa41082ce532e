# Outrider's one image: the same image runs `outrider control-plane` and `outrider operator`.
#
# Stage 1 builds a wheel (with the build tools); stage 2 installs only that wheel and its runtime
# dependencies (plus the `postgres` extra, so PostgreSQL works without another image) into a clean slim
# Python, runs as a fixed non-root uid and has no compiler, no pip cache and no source tree.
#
#   docker build -t outrider:dev .
#   docker run --rm -p 8000:8000 outrider:dev control-plane --host 0.0.0.0 --port 8000

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN pip install --no-cache-dir --upgrade pip build
COPY pyproject.toml README.md ./
COPY outrider ./outrider
RUN python -m build --wheel --outdir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN set -eux; \
    wheel="$(ls /wheels/outrider-*.whl)"; \
    pip install "${wheel}[postgres,otel]"; \
    rm -rf /wheels; \
    groupadd --system --gid 65532 outrider; \
    useradd --system --uid 65532 --gid 65532 --home-dir /data --no-create-home --shell /usr/sbin/nologin outrider; \
    mkdir -p /data; \
    chown 65532:65532 /data
# The control plane's SQLite file lives here by default; the chart mounts a PersistentVolumeClaim over it.
ENV OUTRIDER_DATABASE_URL=sqlite:////data/outrider.db
WORKDIR /data
USER 65532:65532
EXPOSE 8000 8080 9090
ENTRYPOINT ["outrider"]
CMD ["control-plane", "--host", "0.0.0.0", "--port", "8000"]
