# The leadflow worker image (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY leadflow ./leadflow
COPY streams ./streams
COPY rules ./rules
COPY sla ./sla
COPY connectors ./connectors
COPY ops ./ops
RUN pip install --no-cache-dir .
ENV LEADFLOW_DATA_DIR=/data
VOLUME /data
EXPOSE 6066
# Faust stops gracefully on SIGTERM; compose gives it stop_grace_period to do so.
ENTRYPOINT ["leadflow", "worker"]
