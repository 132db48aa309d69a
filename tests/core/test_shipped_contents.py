"""The wheel and the image carry the platform, never the test launchers (testsupport/booking_testing)."""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_has_the_five_packages_and_no_test_launchers(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "UV_CACHE_DIR": os.environ.get("PAT_BOOKING_CACHE", str(Path.home() / ".cache/pat-booking")) + "/uv",
    }
    subprocess.run(
        [str(ROOT / ".venv/bin/uv"), "build", "--wheel", "--quiet", "-o", str(tmp_path), str(ROOT)],
        check=True,
        env=env,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    packages = {t for t in tops if not t.endswith(".dist-info")}
    assert packages == {
        "booking_core",
        "booking_operator",
        "booking_api",
        "booking_consumers",
        "booking_workers",
    }
    assert not [n for n in zipfile.ZipFile(wheel).namelist() if "testing" in n.split("/")[1:2]]


def test_the_image_copies_only_the_shipped_packages() -> None:
    copies = [
        line.split()[1]
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ") and "--from" not in line
    ]
    assert "testsupport" not in copies and "." not in copies
    assert {"core", "operator", "services", "consumers", "workers"} <= set(copies)
