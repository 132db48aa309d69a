"""Session fixtures for the real infrastructure: PostgreSQL, Redis, Apache Kafka, a kube-apiserver and dex.

Each fixture honours an endpoint the user already has (BOOKING_TEST_DATABASE_URL, BOOKING_TEST_REDIS_URL,
BOOKING_TEST_KAFKA_BOOTSTRAP, KUBECONFIG) and otherwise starts the part on free loopback ports from the
project's own provisioned binaries. With CI=true a part that cannot start fails the run with its log;
elsewhere the tests that need it are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from booking_testing.backends import BACKENDS
from booking_testing.procs import InfraError

INFRA_FIXTURES = {
    "postgres_url",
    "postgres_admin_url",
    "redis_url",
    "kafka_bootstrap",
    "kafka_server",
    "kubeconfig",
    "disposable_kubeconfig",
    "dex",
    "pushgateway",
    "prometheus_binary",
}


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _unavailable(part: str, exc: Exception) -> None:
    if _in_ci():
        pytest.fail(f"{part} could not start (CI=true never skips):\n{exc}", pytrace=False)
    pytest.skip(f"{part} unavailable: {exc}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a real-infrastructure fixture as `integration`."""
    for item in items:
        if INFRA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def infra_dir() -> Iterator[Path]:
    """Scratch folder for this session's servers (data dirs and logs), removed afterwards."""
    # Not pytest's tmp_path: its root is 0700, and PostgreSQL runs as `postgres` when we are root.
    d = Path(tempfile.mkdtemp(prefix="pat-booking-infra-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_admin_url(infra_dir: Path) -> Iterator[str]:
    """URL of the `postgres` database on a server this session may create databases on."""
    given = os.environ.get("BOOKING_TEST_DATABASE_URL")
    if given:
        yield given
        return
    from booking_testing.postgres import start_postgres

    try:
        pg = start_postgres(infra_dir / "postgres")
    except InfraError as exc:
        _unavailable("PostgreSQL", exc)
        raise
    yield pg.url()
    pg.stop()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on the parametrized backend: SQLite in tmp_path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/test.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    from booking_testing.postgres import create_database

    name = f"t_{uuid.uuid4().hex[:12]}"
    create_database(postgres_admin_url, name)
    base, _, _ = postgres_admin_url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def redis_url(infra_dir: Path) -> Iterator[str]:
    """A real Redis server (database 0); tests flush it or use unique keys."""
    given = os.environ.get("BOOKING_TEST_REDIS_URL")
    if given:
        yield given
        return
    from booking_testing.redis import start_redis

    try:
        rs = start_redis(infra_dir / "redis")
    except InfraError as exc:
        _unavailable("Redis", exc)
        raise
    yield rs.url
    rs.stop()


@pytest.fixture(scope="session")
def kafka_server(infra_dir: Path) -> Iterator[object]:
    """The session's Apache Kafka broker (KafkaServer), for tests that stop and restart it."""
    from booking_testing.kafka import start_kafka

    try:
        ks = start_kafka(infra_dir / "kafka")
    except InfraError as exc:
        _unavailable("Kafka", exc)
        raise
    yield ks
    ks.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    """bootstrap.servers of a real Apache Kafka broker; tests use unique topic names."""
    given = os.environ.get("BOOKING_TEST_KAFKA_BOOTSTRAP")
    if given:
        return given
    ks = request.getfixturevalue("kafka_server")
    return str(ks.bootstrap)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def started_kubeconfig(infra_dir: Path) -> Iterator[str]:
    """Path of a kubeconfig for a control plane this session started (KWOK nodes), stopped afterwards."""
    from booking_testing.kube import start_kube

    try:
        cluster = start_kube(infra_dir / "kube")
    except InfraError as exc:
        _unavailable("Kubernetes control plane", exc)
        raise
    yield str(cluster.kubeconfig)
    cluster.stop()


@pytest.fixture(scope="session")
def kubeconfig(request: pytest.FixtureRequest) -> str:
    """Path of a kubeconfig for a real API server; tests use their own namespaces and change nothing
    cluster-wide (for that, ask for `disposable_kubeconfig`)."""
    given = os.environ.get("KUBECONFIG")
    if given:
        return given
    return str(request.getfixturevalue("started_kubeconfig"))


@pytest.fixture(scope="session")
def disposable_kubeconfig(request: pytest.FixtureRequest) -> str:
    """A cluster the tests may change cluster-wide (CRDs): the control plane this session started, or
    the KUBECONFIG cluster when the user marked it disposable (BOOKING_TEST_DISPOSABLE_CLUSTER=1 and a
    kind- context). A user's own cluster is never one: the session starts a control plane instead."""
    from booking_testing.disposable import not_disposable_because

    given = os.environ.get("KUBECONFIG")
    if given and not_disposable_because(given) is None:
        return given
    return str(request.getfixturevalue("started_kubeconfig"))


@pytest.fixture(scope="session")
def dex(infra_dir: Path) -> Iterator[object]:
    """A real OpenID Connect provider (dex, in-memory: `restart()` rotates its keys); see testing/dex.py."""
    from booking_testing.dex import start_dex

    try:
        server = start_dex(infra_dir / "dex")
    except InfraError as exc:
        _unavailable("dex (OpenID Connect provider)", exc)
        raise
    yield server
    server.stop()


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[object]:
    """A real Prometheus Pushgateway (Debian's package) of this test's own: pushed groups outlive a test."""
    from booking_testing.prometheus import start_pushgateway

    try:
        gw = start_pushgateway(tmp_path / "pushgateway")
    except InfraError as exc:
        _unavailable("Pushgateway", exc)
        raise
    yield gw
    gw.stop()


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    """The Prometheus server binary (Debian's package); tests start their own with their own targets."""
    from booking_testing.prometheus import prometheus_binary as find

    try:
        return find()
    except InfraError as exc:
        _unavailable("Prometheus", exc)
        raise
