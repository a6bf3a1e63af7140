# The in-cluster agent (`clusterflow-agent`, src/clusterflow/agent/) that registered clusters run.
# Built for amd64 and arm64 (the registration manifest schedules it on the cluster's
# architecture), from the repository root:
#
#   docker buildx build --platform linux/amd64,linux/arm64 -f deploy/agent.Dockerfile \
#     -t registry.example.com/platform/clusterflow-agent:0.1.0 --push .
#
# then set CLUSTERFLOW_AGENT_IMAGE to the pushed digest (name@sha256:..., printed by the push).
#
# Two stages: the builder installs the clusterflow package without its server dependencies
# (the agent needs only the kubernetes client and websockets, at the versions constraints.txt
# pins), so the image carries neither the API's nor the clouds' SDKs; the runtime stage copies
# that virtualenv, runs as the unprivileged user the manifest names (65532), and writes nothing.
# The base image is multi-architecture, and nothing here compiles, so each platform builds the
# same way under buildx (natively or through QEMU).
# checkov:skip=CKV_DOCKER_2: no HEALTHCHECK: Kubernetes probes the agent's /healthz and /readyz (agent/health.py), and the agent runs nowhere else

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/clusterflow-agent
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN /opt/clusterflow-agent/bin/pip install --no-deps . \
 && /opt/clusterflow-agent/bin/pip install -c constraints.txt kubernetes websockets

FROM python:3.11-slim-bookworm
ENV PATH=/opt/clusterflow-agent/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 65532 clusterflow \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin clusterflow
COPY --from=build /opt/clusterflow-agent /opt/clusterflow-agent
USER 65532:65532
EXPOSE 8081
ENTRYPOINT ["clusterflow-agent"]
