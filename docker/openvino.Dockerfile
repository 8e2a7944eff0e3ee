# voxflow on Intel CPUs/iGPUs through OpenVINO. Same layout as cpu.Dockerfile; the model
# volume at /models is read-only for workers. /dev/dri is passed through by compose for iGPUs.
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

CMD ["prefect", "worker", "start", "--pool", "openvino", "--type", "process"]
