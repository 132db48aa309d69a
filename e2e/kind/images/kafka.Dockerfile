# Apache Kafka (KRaft, one node) for the kind e2e: the jars scripts/infra/kafka.sh fetched (copied into the
# build context as libs/) on a JRE from Debian's packages (BASE as in postgres.Dockerfile).
ARG BASE=debian:bookworm-slim
FROM ${BASE}
RUN command -v java >/dev/null \
 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openjdk-17-jre-headless \
     && rm -rf /var/lib/apt/lists/*)
COPY libs/ /opt/kafka/libs/
COPY kafka-run.sh /usr/local/bin/kafka-run
USER 10004:10004
ENTRYPOINT ["/usr/local/bin/kafka-run"]
