"""Tests never change a cluster they did not start: cluster-wide writes need a disposable cluster."""

from __future__ import annotations

import ast
from pathlib import Path

from booking_testing.disposable import DISPOSABLE_ENV, current_context, not_disposable_because

ROOT = Path(__file__).resolve().parents[2]
# Calls that change a whole cluster rather than one test namespace.
CLUSTER_WIDE = {
    "create_custom_resource_definition",
    "delete_custom_resource_definition",
    "patch_custom_resource_definition",
    "delete_collection_namespace",
    "delete_node",
    "create_cluster_role",
    "delete_cluster_role",
    "remove_keda_crds",
    "install_keda_crds",
}


def _kubeconfig(tmp_path: Path, context: str) -> str:
    path = tmp_path / f"{context}.yaml"
    path.write_text(f"apiVersion: v1\nkind: Config\ncurrent-context: {context}\n")
    return str(path)


def test_a_users_cluster_is_not_disposable(tmp_path: Path) -> None:
    prod = _kubeconfig(tmp_path, "prod-eu")
    kind = _kubeconfig(tmp_path, "kind-pat-booking-e2e")
    assert not_disposable_because(prod, {}) is not None
    assert not_disposable_because(kind, {}) is not None  # kind, but not marked
    assert "kind" in str(not_disposable_because(prod, {DISPOSABLE_ENV: "1"}))  # marked, but not kind
    assert not_disposable_because(kind, {DISPOSABLE_ENV: "1"}) is None
    missing = str(tmp_path / "none.yaml")
    assert current_context(f"{missing}:{kind}") == "kind-pat-booking-e2e"
    assert not_disposable_because(missing, {DISPOSABLE_ENV: "1"}) is not None


def _tests_with_cluster_wide_calls(folder: Path) -> list[tuple[str, ast.FunctionDef]]:
    found = []
    for f in sorted(folder.rglob("test_*.py")):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                calls = {
                    (c.func.attr if isinstance(c.func, ast.Attribute) else getattr(c.func, "id", ""))
                    for c in ast.walk(node)
                    if isinstance(c, ast.Call)
                }
                if calls & CLUSTER_WIDE:
                    found.append((f"{f.relative_to(ROOT)}::{node.name}", node))
    return found


def test_cluster_wide_writes_in_tests_ask_for_a_disposable_cluster() -> None:
    found = _tests_with_cluster_wide_calls(ROOT / "tests")
    assert found, "the scan must see the KEDA CRD smoke test"
    for where, fn in found:
        params = {a.arg for a in fn.args.args}
        assert "disposable_kubeconfig" in params, f"{where} changes a cluster it may not own"
        assert "kubeconfig" not in params, where


def test_cluster_wide_writes_in_e2e_run_only_where_the_suite_owns_keda() -> None:
    for where, fn in _tests_with_cluster_wide_calls(ROOT / "e2e"):
        gated = any(isinstance(d, ast.Call) and "keda_crd_files" in ast.unparse(d) for d in fn.decorator_list)
        assert gated, f"{where} changes cluster-wide state without E2E_KEDA_CRDS_DIR (an owned cluster)"
