# voxflow on CPU: a Prefect worker (or the warm job) with the repository at /opt/voxflow.
# The model volume is mounted at /models: read-write for the one-shot warm service only,
# read-only for workers (inference never writes to it and never touches the network).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VOXFLOW_HOME=/opt/voxflow \
    VOXFLOW_STORE=/models \
    VOXFLOW_OUTPUT=/data/output \
    PREFECT_LOGGING_EXTRA_LOGGERS=tasks,blocks,profiles,flows \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PYANNOTE_METRICS_ENABLED=0 \
    DO_NOT_TRACK=1

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

CMD ["prefect", "worker", "start", "--pool", "cpu", "--type", "process"]
