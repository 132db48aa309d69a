"""`booking dev-token` and `booking run` (embedded mode on a fresh directory)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from booking_testing.procs import free_port
from booking_testing.wait import wait_for

BOOKING = [sys.executable, "-m", "booking_core.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOKING_")}
    return {**env, **extra}


def test_dev_token_refuses_a_production_key() -> None:
    ok = subprocess.run(
        [*BOOKING, "dev-token", "--patient", "p1"], env=_env(), capture_output=True, text=True
    )
    assert ok.returncode == 0 and ok.stdout.count(".") == 2
    refused = subprocess.run(
        [*BOOKING, "dev-token", "--patient", "p1"],
        capture_output=True,
        text=True,
        env=_env(
            BOOKING_AUTH_SHARED_SECRET="a-real-production-key-0123456789abcdef",
            BOOKING_AUTH_ISSUER="https://issuer.example.org",
            BOOKING_AUTH_AUDIENCE="pat-booking-api",
        ),
    )
    assert refused.returncode == 2 and refused.stdout == "" and "refusing" in refused.stderr


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in [root, *root.rglob("*")]}


def test_booking_run_serves_demo_data(tmp_path: Path) -> None:
    port = free_port()
    # A file left world-readable by an older version is tightened at start.
    (tmp_path / ".booking" / "mail").mkdir(parents=True)
    (tmp_path / ".booking" / "mail" / "old.eml").write_text("From: x")
    (tmp_path / ".booking" / "mail" / "old.eml").chmod(0o644)
    proc = subprocess.Popen(
        [*BOOKING, "run", "--port", str(port)],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, "booking run exited"
            return httpx.get(f"{base}/readyz", timeout=1).status_code == 200

        wait_for(ready, timeout=90, what="booking run to come up", interval=0.3, ignore=(httpx.HTTPError,))
        assert (tmp_path / ".booking" / "booking.db").exists()
        assert len(httpx.get(f"{base}/api/v1/clinics").json()) == 2
        slots = httpx.get(f"{base}/api/v1/slots", params={"service": "blood-draw"}).json()["items"]
        assert slots
        token = None
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("export TOKEN="):
                token = line.strip().split("=", 1)[1]
                break
        assert token
        auth = {"Authorization": f"Bearer {token}"}
        # The demo patient keeps quiet hours (22:00-07:00 Europe/Berlin), which hold the confirmation
        # email until morning: the test clears them so its outcome does not depend on the hour it runs.
        prefs = httpx.put(
            f"{base}/api/v1/me/notification-preferences",
            json={"quiet_hours_start": None, "quiet_hours_end": None},
            headers=auth,
        )
        assert prefs.status_code == 200, prefs.text
        r = httpx.post(
            f"{base}/api/v1/bookings",
            json={"slot_id": slots[0]["id"]},
            headers={**auth, "Idempotency-Key": "demo-1"},
        )
        assert r.status_code == 201, r.text
        assert httpx.get(f"{base}/api/v1/test-results", headers=auth).json()
        # The confirmation email lands in .booking/mail; every file there and the database are 0600.
        mail = tmp_path / ".booking" / "mail"
        wait_for(lambda: len(list(mail.glob("*.eml"))) >= 2, timeout=30, what="two emails", interval=0.3)
        modes = _modes(tmp_path / ".booking")
        assert len([m for m in modes if m.endswith(".eml")]) >= 2, modes
        assert {"booking.db", "booking.db-wal"} <= set(modes), modes
        assert all(
            mode == (0o700 if (tmp_path / ".booking" / p).is_dir() else 0o600) for p, mode in modes.items()
        ), {p: oct(m) for p, m in modes.items()}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_a_worker_freezes_its_startup_heap(tmp_path: Path) -> None:
    """Objects alive after a worker's startup are left out of garbage collection (booking_api.main)."""
    code = "import gc; from booking_api.main import worker_app; worker_app(); print(gc.get_freeze_count())"
    env = _env(BOOKING_DATABASE_URL=f"sqlite:///{tmp_path}/api.db")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip().splitlines()[-1]) > 10_000
