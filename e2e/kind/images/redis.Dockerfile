# Redis 7 from Debian's packages for the kind e2e (BASE as in postgres.Dockerfile).
ARG BASE=debian:bookworm-slim
FROM ${BASE}
RUN command -v redis-server >/dev/null \
 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
     && rm -rf /var/lib/apt/lists/*)
USER 10003:10003
ENTRYPOINT ["redis-server", "--port", "6379", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", "/tmp"]
