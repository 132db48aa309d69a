"""Each real part is real: PostgreSQL, Redis, Kafka (consumer group + committed offsets), Kubernetes."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import yaml

KEDA_SCHEMAS = Path(__file__).resolve().parents[2] / "third_party" / "keda"


def test_postgres_table_roundtrip(postgres_url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE smoke (id serial primary key, v text not null)"))
        conn.execute(text("INSERT INTO smoke (v) VALUES ('a'), ('b')"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT string_agg(v, ',' ORDER BY id) FROM smoke")).scalar() == "a,b"
        assert "PostgreSQL" in str(conn.execute(text("SELECT version()")).scalar())
    engine.dispose()


def test_redis_roundtrip(redis_url: str) -> None:
    import redis

    r = redis.Redis.from_url(redis_url)
    key = f"smoke:{uuid.uuid4().hex}"
    r.set(key, b"hello", ex=30)
    assert r.get(key) == b"hello"
    assert r.info("server")["redis_version"]


def test_kafka_consumer_group_commits(kafka_bootstrap: str) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition

    topic, group = f"smoke-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "acks": "all"})
    for i in range(5):
        producer.produce(topic, key=b"k", value=f"m{i}".encode())
    assert producer.flush(30) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(got) < 5 and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
    consumer.commit(asynchronous=False)
    parts = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    consumer.close()
    assert sorted(got) == [f"m{i}".encode() for i in range(5)]
    assert sum(max(tp.offset, 0) for tp in parts) == 5


def test_kubernetes_deployment_becomes_available(kubeconfig: str) -> None:
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=kubeconfig)
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    ns = f"smoke-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    labels = {"app": "smoke"}
    apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": "smoke"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "c", "image": "example.invalid/smoke:1"}]},
                },
            },
        },
    )
    deadline = time.monotonic() + 90
    available = 0
    while time.monotonic() < deadline:
        dep = apps.read_namespaced_deployment("smoke", ns)
        available = dep.status.available_replicas or 0
        if available == 2:
            break
        time.sleep(0.5)
    core.delete_namespace(ns)
    assert available == 2, "KWOK should make the pods Ready so the Deployment becomes Available"


def test_keda_crds_accept_a_scaledobject(disposable_kubeconfig: str) -> None:
    # Installs and removes CRDs (cluster-wide): only on a cluster the session started or one marked
    # disposable, and it removes only the CRDs it created.
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=disposable_kubeconfig)
    ext = client.ApiextensionsV1Api(api_client)
    created: list[str] = []
    for f in sorted(KEDA_SCHEMAS.glob("keda.sh_*.yaml")):
        crd = yaml.safe_load(f.read_text())
        try:
            ext.create_custom_resource_definition(crd)
            created.append(crd["metadata"]["name"])
        except client.ApiException as exc:
            if exc.status != 409:
                raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition("scaledobjects.keda.sh")
        if any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or []):
            break
        time.sleep(0.3)
    ns = f"smoke-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": ns}})
    custom = client.CustomObjectsApi(api_client)
    so = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "smoke", "namespace": ns},
        "spec": {
            "scaleTargetRef": {"name": "smoke"},
            "minReplicaCount": 1,
            "maxReplicaCount": 10,
            "triggers": [
                {
                    "type": "kafka",
                    "metadata": {
                        "bootstrapServers": "kafka:9092",
                        "consumerGroup": "g",
                        "topic": "t",
                        "lagThreshold": "20",
                    },
                }
            ],
        },
    }
    custom.create_namespaced_custom_object("keda.sh", "v1alpha1", ns, "scaledobjects", so)
    got = custom.get_namespaced_custom_object("keda.sh", "v1alpha1", ns, "scaledobjects", "smoke")
    assert got["spec"]["maxReplicaCount"] == 10
    with pytest.raises(client.ApiException) as bad:
        custom.create_namespaced_custom_object(
            "keda.sh",
            "v1alpha1",
            ns,
            "scaledobjects",
            {**so, "metadata": {"name": "bad", "namespace": ns}, "spec": {"minReplicaCount": 1}},
        )
    assert bad.value.status == 422  # the schema requires scaleTargetRef and triggers
    client.CoreV1Api(api_client).delete_namespace(ns)
    # other tests share this cluster and may need it without KEDA
    for name in created:
        ext.delete_custom_resource_definition(name)
