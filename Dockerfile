# The operator image: `docker build -t workerpool .`
# Your own image adds your handler code on top:  FROM workerpool  /  COPY myapp /app/myapp
FROM python:3.11-slim

# tini as PID 1: forwards SIGTERM to the operator and reaps any orphan in the pod
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY workerpool ./workerpool
COPY examples ./examples
RUN pip install --no-cache-dir ".[operator]" && rm -rf /root/.cache

ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 WORKERPOOL_STATE_DIR=/tmp/workerpool
USER 10001:10001
ENTRYPOINT ["/usr/bin/tini", "--", "workerpool"]
CMD ["operator", "--liveness=http://0.0.0.0:8080/healthz"]
