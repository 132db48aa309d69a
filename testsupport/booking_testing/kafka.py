"""A throwaway Apache Kafka broker (KRaft, one node) from the Maven Central jars in the cache."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from booking_testing.procs import (
    CACHE_ROOT,
    InfraError,
    Server,
    free_port,
    port_open,
    run_checked,
    start_server,
    wait_ready,
)

KAFKA_VERSION = "4.3.1"


def kafka_home() -> Path:
    """The cached jar folder written by scripts/infra/kafka.sh."""
    home = CACHE_ROOT / f"kafka-{KAFKA_VERSION}"
    if not (home / ".stamp").exists():
        raise InfraError(f"Kafka jars not found in {home}: run `make provision` (scripts/infra/kafka.sh)")
    return home


@dataclass
class KafkaServer:
    """A running single-node broker+controller."""

    server: Server
    port: int
    controller_port: int
    workdir: Path

    @property
    def bootstrap(self) -> str:
        """bootstrap.servers for clients."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop the broker."""
        self.server.stop(timeout=20)

    def restart(self) -> KafkaServer:
        """Start the broker again on the same ports and data (for outage tests)."""
        return start_kafka(self.workdir, port=self.port, controller_port=self.controller_port)


def _java() -> str:
    java = shutil.which("java")
    if not java:
        raise InfraError("java not found: Kafka needs a JDK (OpenJDK 17 is installed on these machines)")
    return java


def start_kafka(workdir: Path, *, port: int | None = None, controller_port: int | None = None) -> KafkaServer:
    """Format a fresh log dir and start the broker; returns once it serves metadata."""
    home = kafka_home()
    cp = f"{home}/libs/*"
    port = port or free_port()
    controller = controller_port or free_port()
    data = workdir / "data"
    workdir.mkdir(parents=True, exist_ok=True)
    props = workdir / "server.properties"
    props.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{controller}",
                f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={data}",
                "auto.create.topics.enable=true",
                "num.partitions=3",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "log.flush.interval.messages=9223372036854775807",
                "",
            ]
        )
    )
    java = _java()
    if not (data / "meta.properties").exists():
        cid = run_checked(
            [java, "-cp", cp, "kafka.tools.StorageTool", "random-uuid"], what="kafka random-uuid"
        )
        run_checked(
            [
                java,
                "-cp",
                cp,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cid.strip().splitlines()[-1],
                "-c",
                str(props),
                "--ignore-formatted",
            ],
            what="kafka storage format",
        )
    server = start_server(
        "kafka",
        [
            java,
            "-Xms256m",
            "-Xmx768m",
            "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1",
            "-Dslf4j.provider=org.slf4j.simple.SimpleServiceProvider",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp",
            cp,
            "kafka.Kafka",
            str(props),
        ],
        workdir=workdir,
    )
    ks = KafkaServer(server=server, port=port, controller_port=controller, workdir=workdir)

    def listening() -> bool:
        server.check_alive()
        return port_open(port)

    def serves_metadata() -> bool:
        from confluent_kafka.admin import AdminClient

        md = AdminClient({"bootstrap.servers": ks.bootstrap}).list_topics(timeout=10)
        return bool(md.brokers)

    try:
        # probe the port first: a client pointed at a closed port logs a line per retry
        wait_ready(listening, timeout=90, what="Kafka to listen", interval=0.5)
        wait_ready(serves_metadata, timeout=30, what="Kafka to serve metadata", interval=1)
    except InfraError:
        ks.stop()
        raise
    return ks
