# driftrec services image (scorer, learner, replay, topics). torch comes from PyPI (a CUDA
# build that also runs on the CPU); for a smaller CPU-only image pass
# --build-arg TORCH_INDEX=<URL of PyTorch's CPU wheel index>.
FROM python:3.11-slim

ARG TORCH_INDEX=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
    ARTIFACT_DIR=/artifacts DRIFTREC_CACHE=/cache

RUN useradd --create-home --uid 10001 driftrec \
 && mkdir -p /artifacts /cache /app && chown driftrec /artifacts /cache /app
WORKDIR /app

RUN pip install ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} torch
COPY pyproject.toml README.md* ./
COPY stream ./stream
COPY state ./state
COPY scorer ./scorer
COPY learner ./learner
COPY driftrec ./driftrec
RUN pip install .

USER driftrec
EXPOSE 9100
CMD ["driftrec", "--help"]
