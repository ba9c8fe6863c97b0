# The operator image, tagged with the package version (pyproject.toml):
#   docker build -t workerpool:0.1.0 .
# deploy/ pins that tag. Your own image adds your handler code on top:
#   FROM workerpool:0.1.0  /  COPY myapp /app/myapp
FROM python:3.11-slim

# tini as PID 1: forwards SIGTERM to the operator and reaps any orphan in the pod.
# The workerpool user gives uid 10001 a passwd entry and a writable HOME (/tmp, an emptyDir in
# deploy/) for tools that look them up; the operator itself needs neither (it names itself from
# POD_ID or the hostname), so the image also runs under an arbitrary uid (OpenShift).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 workerpool \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin workerpool

WORKDIR /app
# dependencies first, in a layer that only pyproject.toml invalidates: a code change rebuilds
# in seconds instead of downloading kopf and the kubernetes client again
COPY pyproject.toml ./
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
print("\n".join(p["dependencies"] + p["optional-dependencies"]["operator"]))' >/tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt && rm -rf /tmp/requirements.txt /root/.cache
COPY README.md ./
COPY workerpool ./workerpool
COPY examples ./examples
RUN pip install --no-cache-dir --no-deps ".[operator]" && rm -rf /root/.cache build

ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 WORKERPOOL_STATE_DIR=/tmp/workerpool
# numeric, so that the kubelet can check runAsNonRoot without reading /etc/passwd
USER 10001:10001
ENTRYPOINT ["/usr/bin/tini", "--", "workerpool"]
CMD ["operator", "--liveness=http://0.0.0.0:8080/healthz"]
