# syntax=docker/dockerfile:1
# GPU image of the lip-sync service: `docker build -t lipsync .`, then
#   docker run --gpus all -p 8000:8000 -v "$PWD/weights:/models" lipsync
# Weights come from the /models volume (MODELS_DIR), or are baked in at build time with
#   docker build --build-arg DOWNLOAD_MODELS=1 -t lipsync .
# (InsightFace buffalo_l and CodeFormer weights are non-commercial; see the README.)
# Stop with a grace period longer than LIPSYNC_SHUTDOWN_GRACE_S: `docker stop -t 60`.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG DOWNLOAD_MODELS=0

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    MODELS_DIR=/models \
    LIPSYNC_WORKDIR=/tmp \
    LIPSYNC_SHUTDOWN_GRACE_S=30

# python3.11 from Ubuntu 22.04; libgl1/libglib2.0-0 for opencv-python. PyAV wheels bundle FFmpeg.
# Versions come from the pinned base image's Ubuntu release (apt pins would break on every point update).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv libgl1 libglib2.0-0 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv "$VIRTUAL_ENV"

WORKDIR /app

# CUDA torch first, from its own index, so the [neural] extra's torch>=2.4 is already satisfied.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

COPY pyproject.toml README.md ./
COPY server.py ./
COPY stream ./stream
COPY jobs ./jobs
COPY service ./service
COPY stages ./stages
COPY models ./models
COPY scripts ./scripts
COPY benchmarks ./benchmarks
# The project itself; its dependency ranges live in pyproject.toml.
# onnxruntime (a core dependency) and onnxruntime-gpu install the same `onnxruntime`
# module; the CPU one must go, or it shadows the CUDA provider.
# hadolint ignore=DL3013
RUN pip install ".[gpu,neural]" \
    && pip uninstall -y onnxruntime \
    && pip install --force-reinstall --no-deps "onnxruntime-gpu>=1.17"

RUN mkdir -p /models \
    && if [ "$DOWNLOAD_MODELS" = "1" ]; then python scripts/download_models.py --models-dir /models; fi \
    && useradd --create-home --uid 1000 app \
    && chown -R app /models
VOLUME ["/models"]

USER 1000
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
CMD ["uvicorn", "server:app", "--host", "0.0.0.0", "--port", "8000", "--timeout-graceful-shutdown", "40"]
