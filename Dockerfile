# The `stair` image of the demo cluster (docker-compose.yml): the stair-es CLI with the serve extra
# (FastAPI, uvicorn) and the demo model shipped in the package; onnxruntime runs on the CPU. No torch:
# nothing in this image trains. Build arg ORT_EXTRAS=cuda,cudnn adds the CUDA and cuDNN libraries
# onnxruntime-gpu loads (the compose file's `gpu` profile builds it that way; the host needs the
# NVIDIA driver and container toolkit).
FROM python:3.11-slim-bookworm

ARG ORT_EXTRAS=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STAIR_ES_CACHE=/data

WORKDIR /opt/stair-es
COPY pyproject.toml README.md ./
COPY stair_es ./stair_es
COPY cli ./cli
COPY mappings ./mappings
RUN pip install ".[serve]" \
    && if [ -n "$ORT_EXTRAS" ]; then pip install "onnxruntime-gpu[$ORT_EXTRAS]"; fi

# an unprivileged user owns the data volume (sample collection, failures file)
RUN useradd --system --uid 10001 --home-dir /data stair && mkdir -p /data && chown stair /data
USER stair
VOLUME /data
EXPOSE 8080

# tests/test_compose.py checks that these (and the compose file's commands) parse as stair-es commands
ENTRYPOINT ["stair-es"]
CMD ["serve"]
