"""The platform really running (kind): every pod Ready from the production example, a booking served through
the API Service and confirmed over Kafka with its email at the SMTP sink, an HL7 result reaching the patient,
the CronJob completing, KEDA scaling a consumer on real lag and the API's HPA reading real CPU.

Needs the in-cluster dependencies of e2e/kind/deps.yaml: runs only under `make e2e-kind` (E2E_KIND_FLOW=1).
"""

from __future__ import annotations

import json
import os
import textwrap
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from e2elib import CONVERGE_S, Cluster, prod_platform, wait_for
from kubernetes.stream import stream

from booking_core.topology import CONSUMERS

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.environ.get("E2E_KIND_FLOW") != "1", reason="needs `make e2e-kind` (in-cluster deps)"
    ),
]

NAME = "pat--booking--be"
API = f"{NAME}--app--prod"
PTR = f"{NAME}--consumer-pat-test-result--prod"
HPA = f"{API}-hpa"
SINK = "/api/v1/namespaces/booking-deps/services/sink:8080/proxy/messages"
# The identity provider of e2e/kind/dex.yaml, reached through the API server's service proxy (the Service is
# HTTPS; the API server does not check the backend's certificate, the platform checks it with the run's CA).
DEX_TOKEN = "/api/v1/namespaces/booking-deps/services/https:dex:5556/proxy/dex/token"
# The one patient dex knows (preferred_username is the API's patient-id claim on kind) and its password.
DEX_PATIENT = "kind-patient"
DEX_CLIENT = ("patient-portal", "portal-client-secret-e2e")
API_AUDIENCE = "pat-booking-api"


def stamp(what: str) -> None:
    """A timestamped line in the test's output (the note quotes them)."""
    print(f"{datetime.now(UTC):%H:%M:%S} {what}", flush=True)


def in_api_pod(cluster: Cluster, ns: str, script: str) -> str:
    """Run a Python script in an API pod (the platform's code and connection env); returns its stdout."""
    pods = cluster.core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/component=api").items
    pod = next(p.metadata.name for p in pods if p.status.phase == "Running")
    out: str = stream(
        cluster.core.connect_get_namespaced_pod_exec, pod, ns, container="api",
        command=["python", "-c", textwrap.dedent(script)], stderr=True, stdin=False, stdout=True, tty=False,
    )  # fmt: skip
    return out


SEED = """
import sys
from datetime import UTC, datetime, timedelta
from booking_core.db.models import Clinic, Patient, Service, Slot
from booking_core.db.session import make_engine, make_session_factory
from booking_core.settings import BookingSettings
sessions = make_session_factory(make_engine(BookingSettings().database_url))
with sessions() as s:
    s.merge(Patient(id="{patient}", tier="standard", given_name="Kind", family_name="Flow",
                    email="{email}"))
    clinic = Clinic(code="{clinic}", name="Kind clinic")
    service = Service(code="{service}", name="Blood draw")
    s.add_all([clinic, service])
    s.flush()
    starts = datetime.now(UTC) + timedelta(days=3)
    slot = Slot(clinic_id=clinic.id, service_id=service.id, starts_at=starts,
                ends_at=starts + timedelta(minutes=15), capacity=2)
    s.add(slot)
    s.commit()
    print("SLOT", slot.id)
"""

PRODUCE = """
import json, os, sys
from confluent_kafka import Producer
p = Producer({{"bootstrap.servers": os.environ["BOOKING_KAFKA_BOOTSTRAP_SERVERS"], "linger.ms": 20}})
for key, value in json.loads({messages!r}):
    p.produce("{topic}", key=key.encode(), value=value.encode())
    p.poll(0)
print("UNSENT", p.flush(30))
"""


# LabResultsStored events naming results that do not exist: each costs the consumer a real transaction, and
# releases nothing. Built in the pod (an exec's arguments are limited to 128 KiB).
FLOOD = """
import json, os, uuid
from datetime import UTC, datetime
from confluent_kafka import Producer
p = Producer({{"bootstrap.servers": os.environ["BOOKING_KAFKA_BOOTSTRAP_SERVERS"], "linger.ms": 20}})
now = datetime.now(UTC).isoformat()
for i in range({count}):
    lm = "lm-{run}-%d" % i
    p.produce("{topic}", key=lm.encode(), value=json.dumps({{
        "event_id": str(uuid.uuid4()), "type": "lab_results.stored", "version": 1, "occurred_at": now,
        "aggregate_type": "lab_message", "aggregate_id": lm,
        "payload": {{"lab_message_id": lm, "patient_id": "{patient}", "tier": "standard",
                    "result_ids": ["none-" + lm]}},
    }}).encode())
    p.poll(0)
print("UNSENT", p.flush(60))
"""


def produce(cluster: Cluster, ns: str, topic: str, messages: list[tuple[str, str]]) -> None:
    """Produce (key, value) pairs to a topic from inside the cluster."""
    out = in_api_pod(cluster, ns, PRODUCE.format(topic=topic, messages=json.dumps(messages)))
    assert "UNSENT 0" in out, out


def node_url(cluster: Cluster, ns: str) -> str:
    """The API Service's NodePort on the kind node (reached over the cluster's own docker network)."""
    node = cluster.core.list_node().items[0]
    ip = next(a.address for a in node.status.addresses if a.type == "InternalIP")
    port = cluster.core.read_namespaced_service(API, ns).spec.ports[0].node_port
    return f"http://{ip}:{port}"


def answers(call: Callable[[], httpx.Response]) -> Callable[[], httpx.Response | None]:
    """call, with connection errors read as "not yet" (for wait_for)."""

    def attempt() -> httpx.Response | None:
        try:
            return call()
        except httpx.TransportError:
            return None

    return attempt


def token(cluster: Cluster, username: str) -> dict[str, str]:
    """A bearer header with an ID token from dex (password grant), issued to the API's audience."""
    form = {
        "grant_type": "password",
        "username": f"{username}@example.org",
        "password": "password",
        "scope": f"openid profile email groups audience:server:client_id:{API_AUDIENCE}",
        # client_secret_post: the API server's proxy is not trusted with an Authorization header
        "client_id": DEX_CLIENT[0],
        "client_secret": DEX_CLIENT[1],
    }
    answer = cluster.post_form(DEX_TOKEN, form)
    return {"Authorization": f"Bearer {answer['id_token']}"}


def oru(control_id: str, mrn: str) -> str:
    """An HL7 v2.5.1 ORU^R01 with one final lipid result (the layout of tests/consumers' samples)."""
    return "\r".join([
        f"MSH|^~\\&|LIS|CENTRAL-LAB|PATBOOK|HOSP|20250301090000+0700||ORU^R01^ORU_R01|{control_id}|P|2.5.1",
        f"PID|1||{mrn}^^^HOSP^MR||Flow^Kind^^^^^L||19700101|F",
        f"OBR|1|ORD-{control_id}|ACC-{control_id}|LIPID^Lipid panel^L|||20250301070000+0700"
        "|||||||||||||||20250301085500+0700||CH|F",
        "OBX|1|NM|2571-8^Triglycerides^LN||1.2|mmol/L|<1.7|N|||F",
    ])  # fmt: skip


def ready_pods(cluster: Cluster, ns: str) -> tuple[int, int]:
    """(Ready, all) running pods of the platform's Deployments."""
    pods = [p for p in cluster.core.list_namespaced_pod(ns).items if p.status.phase != "Succeeded"]
    ready = [
        p for p in pods if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]
    return len(ready), len(pods)


def test_the_platform_serves_on_kind(cluster: Cluster, namespace: str, keda: None) -> None:
    ns = namespace
    t0 = time.monotonic()
    cluster.apply_platform(prod_platform(ns))

    # ---- 14 Deployments, every pod Ready, restricted, from preloaded images only
    def all_ready() -> bool:
        deps = cluster.deployments(ns)
        if len(deps) != 14:
            return False
        ok = all(
            (d.get("status", {}).get("readyReplicas") or 0) >= max(1, d["spec"].get("replicas") or 1)
            for d in deps.values()
        )
        st = cluster.platform(ns, NAME).get("status", {})
        return ok and st.get("components") == "14/14"

    wait_for(all_ready, timeout=CONVERGE_S, what="14 Deployments with every pod Ready", interval=2)
    ready, total = ready_pods(cluster, ns)
    stamp(f"14/14 Deployments Ready, {ready}/{total} pods Ready in {time.monotonic() - t0:.0f}s")
    assert (
        cluster.core.read_namespace(ns).metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    )
    pods = cluster.core.list_namespaced_pod(ns).items
    for p in pods:
        for c in [*(p.spec.init_containers or []), *p.spec.containers]:
            assert c.image_pull_policy in ("Never", "IfNotPresent"), (p.metadata.name, c.name)
    # No pull was attempted: kubelet reports "Pulled" only as "already present on machine".
    for e in cluster.core.list_namespaced_event(ns).items:
        assert e.reason not in ("Pulling", "ErrImagePull", "ErrImageNeverPull", "ImagePullBackOff"), e.message
        assert e.reason != "Pulled" or "already present" in (e.message or ""), e.message

    # ---- migrations ran (init container, exit 0) before the API served
    api_pods = [p for p in pods if p.metadata.labels.get("app.kubernetes.io/component") == "api"]
    for p in api_pods:
        migrate = p.status.init_container_statuses[0]
        assert migrate.name == "migrate" and migrate.state.terminated.exit_code == 0
        started = p.status.container_statuses[0].state.running.started_at
        assert migrate.state.terminated.finished_at <= started

    # ---- a booking through the API Service, confirmed over Kafka by the booking consumer, emailed
    run = uuid.uuid4().hex[:8]
    patient, email = DEX_PATIENT, f"{DEX_PATIENT}@example.org"
    seed = SEED.format(patient=patient, email=email, clinic=f"K{run}", service=f"s-{run}")
    outputs: list[str] = []

    def seeded() -> str | None:
        # The database may still be settling on a busy node: a failed attempt commits nothing; try again.
        outputs.append(in_api_pod(cluster, ns, seed))
        return outputs[-1].split("SLOT", 1)[1].split()[0] if "SLOT" in outputs[-1] else None

    slot_id = wait_for(
        seeded,
        timeout=120,
        what="the seed script in an API pod",
        interval=3,
        details=lambda: outputs[-1][-2000:],
    )
    base = node_url(cluster, ns)
    with httpx.Client(base_url=base, timeout=15, headers=token(cluster, patient)) as api:
        ready = answers(lambda: api.get("/readyz"))
        wait_for(
            lambda: (r := ready()) is not None and r.status_code == 200, timeout=60, what="the API Service"
        )
        created = api.post("/api/v1/bookings", json={"slot_id": slot_id}, headers={"Idempotency-Key": run})
        assert created.status_code == 201, created.text
        booking_id = created.json()["id"]
        stamp(f"booking created through {base} (status {created.json()['status']})")
        wait_for(
            lambda: api.get(f"/api/v1/bookings/{booking_id}").json()["status"] == "booked",
            timeout=120, what="the booking to become booked via Kafka", interval=1,
        )  # fmt: skip
        stamp("booking is booked")

        def mailed() -> bool:
            mails = cluster.get_json(SINK)["mail"]
            return any(any(email in r for r in m["to"]) for m in mails)

        wait_for(mailed, timeout=120, what="the confirmation email at the SMTP sink", interval=1)
        stamp("confirmation email received by the SMTP sink")

        # ---- an HL7 result on the LIS topic becomes visible to the patient, with its notification
        produce(cluster, ns, CONSUMERS["lis-testresult"].topic, [("central-lab", oru(f"K{run}", patient))])
        results = wait_for(
            lambda: api.get("/api/v1/test-results").json(), timeout=120, what="the HL7 result", interval=1
        )
        stamp(f"HL7 result visible to the patient: {[r['test_code'] for r in results]}")
        wait_for(
            lambda: any(n["kind"] == "results_available" for n in api.get("/api/v1/notifications").json()),
            timeout=120, what="the results notification", interval=1,
        )  # fmt: skip
        stamp("results notification in the patient's inbox")

    # ---- the CronJob's run completes
    def cron_done() -> bool:
        return any((j.status.succeeded or 0) >= 1 for j in cluster.batch.list_namespaced_job(ns).items)

    wait_for(cron_done, timeout=180, what="a successful CronJob run", interval=2)
    stamp("a CronJob run completed")

    # ---- the API's HPA reads CPU from metrics-server
    def hpa_cpu() -> Any:
        hpa = cluster.get_json(f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/{HPA}")
        for m in hpa.get("status", {}).get("currentMetrics") or []:
            if m.get("type") == "Resource" and m["resource"]["current"].get("averageUtilization") is not None:
                return m["resource"]["current"]
        return None

    cpu = wait_for(hpa_cpu, timeout=180, what="the API HPA's current CPU", interval=2)
    stamp(f"API HPA current CPU: {cpu}")

    # ---- KEDA scales pat-test-result on lag (20 per replica) and back down once drained
    replicas = lambda: cluster.apps.read_namespaced_deployment(PTR, ns).spec.replicas  # noqa: E731
    assert replicas() == 1
    topic = CONSUMERS["pat-test-result"].topic
    # Enough lag to outlast the HPA's 15 s sync: the faster consumer drained 3,000 before KEDA's HPA
    # looked once in one CI run, and the Deployment never scaled.
    flood = 15_000
    out = in_api_pod(cluster, ns, FLOOD.format(topic=topic, run=run, patient=patient, count=flood))
    assert "UNSENT 0" in out, out
    stamp(f"{flood} events produced to {topic}")
    wait_for(lambda: replicas() > 1, timeout=240, what="KEDA to scale pat-test-result up", interval=1)
    stamp(f"KEDA scaled pat-test-result up to {replicas()} replicas")
    wait_for(lambda: replicas() == 1, timeout=900, what="KEDA to scale pat-test-result back down", interval=5)
    stamp("KEDA scaled pat-test-result back down to 1 replica")
