# voxflow on one NVIDIA GPU: CUDA 12 + cuDNN 9 runtime (what CTranslate2 4.5 and torch need).
# Same layout as cpu.Dockerfile; the model volume at /models is read-only for workers.
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VOXFLOW_HOME=/opt/voxflow \
    VOXFLOW_STORE=/models \
    VOXFLOW_OUTPUT=/data/output \
    PREFECT_LOGGING_EXTRA_LOGGERS=tasks,blocks,profiles,flows \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PYANNOTE_METRICS_ENABLED=0 \
    DO_NOT_TRACK=1
RUN apt-get update && apt-get install -y --no-install-recommends \
        software-properties-common \
    && add-apt-repository -y ppa:deadsnakes/ppa && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /opt/voxflow
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.lock
COPY voxflow voxflow
COPY flows flows
COPY tasks tasks
COPY blocks blocks
COPY profiles profiles
COPY prefect.yaml ./
COPY examples/sample.mp4 examples/sample.mp4
RUN pip install --no-cache-dir --no-deps -e . && useradd --uid 1000 --create-home voxflow \
    && mkdir -p /models /data/output /data/inbox && chown voxflow /data/output /data/inbox
USER voxflow

CMD ["prefect", "worker", "start", "--pool", "cuda", "--type", "process"]
