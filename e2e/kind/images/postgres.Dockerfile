# PostgreSQL 15 from Debian's packages for the kind e2e. BASE: a Debian bookworm image; when it already holds
# the server (scripts/kind/ builds one with mmdebstrap, no registry) nothing is installed, else apt-get does it.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
RUN test -x /usr/lib/postgresql/15/bin/postgres \
 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
     && rm -rf /var/lib/apt/lists/*)
# initdb wants its uid in /etc/passwd; a fixed non-root uid for the restricted pod security standard.
RUN echo "pg:x:10002:10002::/var/lib/pg:/usr/sbin/nologin" >> /etc/passwd && echo "pg:x:10002:" >> /etc/group
COPY postgres-run.sh /usr/local/bin/postgres-run
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/pg/data LANG=C.UTF-8
USER 10002:10002
ENTRYPOINT ["/usr/local/bin/postgres-run"]
