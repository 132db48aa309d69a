"""`booking render` and `booking crd`: output formats, and bad CRs refused with each bad field named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from booking_core.cli import main

ROOT = Path(__file__).resolve().parents[2]
PROD = ROOT / "manifests" / "examples" / "pat-booking-be-prod.yaml"


def prod() -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(PROD.read_text())
    return obj


def run(tmp_path: Path, obj: dict[str, Any], *extra: str) -> tuple[int, str, str]:
    path = tmp_path / "cr.yaml"
    path.write_text(yaml.safe_dump(obj))
    proc = subprocess.run(
        [sys.executable, "-m", "booking_core.cli", "render", "-f", str(path), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_yaml_output_is_stable_and_complete(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", str(PROD)]) == 0
    first = capsys.readouterr().out
    assert main(["render", "-f", str(PROD), "-o", "yaml"]) == 0
    assert capsys.readouterr().out == first
    docs = list(yaml.safe_load_all(first))
    assert len([d for d in docs if d["kind"] == "Deployment"]) == 14
    assert docs[0]["kind"] == "ServiceAccount"


def test_json_output_is_a_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", str(PROD), "-o", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "List"
    assert [i["kind"] for i in out["items"]].count("CronJob") == 1


def test_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(PROD.read_text()))
    assert main(["render", "-f", "-"]) == 0
    assert "kafka-pat--booking--be--consumer-pat-test-result--prod" in capsys.readouterr().out


def _min_gt_max(o: dict[str, Any]) -> None:
    o["spec"]["api"]["autoscaling"]["hpa"] = {"minReplicas": 6, "maxReplicas": 5}


def _unknown_consumer(o: dict[str, Any]) -> None:
    o["spec"]["consumers"]["payments"] = {"replicas": 1}


def _missing_image(o: dict[str, Any]) -> None:
    del o["spec"]["image"]


def _long_name(o: dict[str, Any]) -> None:
    o["metadata"]["name"] = "pat--booking--be-x"  # 17 chars: keda-hpa-... becomes 64


def _keda_min_gt_max(o: dict[str, Any]) -> None:
    o["spec"]["consumers"]["pat-test-result"]["autoscaling"]["keda"]["minReplicas"] = 11


def _both_autoscalers(o: dict[str, Any]) -> None:
    o["spec"]["consumers"]["booking"] = {"autoscaling": {"hpa": {}, "keda": {}}}


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (_min_gt_max, "spec.api.autoscaling.hpa", "minReplicas (6) must be <= maxReplicas (5)"),
        (_unknown_consumer, "spec.consumers.payments", "not permitted"),
        (_missing_image, "spec.image", "required"),
        (_long_name, "metadata.name", "keda-hpa-kafka-<cr>--consumer-pat-test-result--<env>"),
        (_keda_min_gt_max, "spec.consumers.pat-test-result.autoscaling.keda", "minReplicas (11)"),
        (_both_autoscalers, "spec.consumers.booking.autoscaling", "at most one of hpa, keda"),
    ],
    ids=["min>max", "unknown-consumer", "missing-image", "long-name", "keda-min>max", "hpa+keda"],
)
def test_bad_cr_names_the_field(
    mutate: Any, field: str, words: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    obj = prod()
    mutate(obj)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(obj))
    assert main(["render", "-f", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    line = next(ln for ln in captured.err.splitlines() if ln.strip().startswith(field + ":"))
    assert words.lower() in line.lower(), captured.err


def test_every_bad_field_is_reported_at_once(tmp_path: Path) -> None:
    obj = prod()
    _min_gt_max(obj)
    _unknown_consumer(obj)
    obj["spec"]["image"].pop("tag")
    code, out, err = run(tmp_path, obj)
    assert code == 1 and out == ""
    for field in ("spec.api.autoscaling.hpa", "spec.consumers.payments", "spec.image"):
        assert f"  {field}:" in err


def test_subprocess_renders(tmp_path: Path) -> None:
    code, out, err = run(tmp_path, prod(), "-o", "json")
    assert code == 0, err
    assert len(json.loads(out)["items"]) > 20


def test_missing_file_fails_cleanly(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["render", "-f", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err
