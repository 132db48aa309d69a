"""One table of every benchmark figure beside its baseline, the ratio and issue 15's goal.

Reads the JSON each bench/*.py wrote under bench/results/, prints the table and writes it as
bench/results/summary.json. A missing benchmark (BENCH=api) or field leaves its rows empty, never fails.

    python bench/report/summary.py [--results bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class Row:
    figure: str
    measured: str
    baseline: str
    ratio: float | None
    goal: str
    met: bool | None  # None: no goal, or not measured
    client_cpu_share: float | None = None
    load_average_1m: float | None = None


def dig(doc: dict[str, Any] | None, *path: str) -> Any:
    """doc[path[0]][path[1]]... or None where any step is missing."""
    cur: Any = doc
    for key in path:
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return cur


def load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    if not path.exists():
        return None
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def http_row(
    api: dict[str, Any] | None, key: str, figure: str, goal: float | None, p99_ms: float | None
) -> Row:
    """A request/s figure of bench/api.py against its /healthz baseline."""
    run, base = dig(api, key), dig(api, "healthz")
    # The bench states its goals in its JSON; the defaults here are issue 15's, for older results.
    goal = dig(api, "goals", key, "ratio") or goal
    p99_ms = dig(api, "goals", key, "p99_ms") or p99_ms
    if not run or not base:
        return Row(figure, "-", "-", None, _goal(goal, p99_ms), None)
    ratio = round(run["req_per_s"] / base["req_per_s"], 3) if base["req_per_s"] else None
    lat = run["latency_ms"]
    met: bool | None = None
    if goal is not None and ratio is not None:
        met = ratio >= goal and (p99_ms is None or lat["p99"] < p99_ms) and run["errors"] == 0
        if key == "booking_create":
            met = met and dig(api, "database_check", "overbooked_slots") == 0
    measured = (
        f"{run['req_per_s']:.0f} req/s, p50 {lat['p50']} ms, p99 {lat['p99']} ms, errors {run['errors']}"
    )
    if "server_cpu_ms_per_request" in run and "server_cpu_ms_per_request" in base:
        measured += (
            f", server CPU {run['server_cpu_ms_per_request']} ms/req "
            f"(/healthz {base['server_cpu_ms_per_request']})"
        )
    if key == "booking_create":
        measured += f", overbooked {dig(api, 'database_check', 'overbooked_slots')}"
    if key == "slot_search" and "slots_per_response" in run:
        measured += f", {run['slots_per_response']} slots/page"
    return Row(
        figure,
        measured,
        f"/healthz {base['req_per_s']:.0f} req/s",
        ratio,
        _goal(goal, p99_ms),
        met,
        run.get("client_cpu_share"),
        run.get("load_average_1m"),
    )


def _goal(ratio: float | None, p99_ms: float | None) -> str:
    if ratio is None:
        return "-"
    return f">= {ratio}x" + (f", p99 < {p99_ms:.0f} ms, 0 overbooked" if p99_ms else "")


def rows(results: Path) -> list[Row]:
    """Every figure we know how to read, in the issue's order."""
    api, workers, events, op = (load(results, n) for n in ("api", "workers", "events", "operator"))
    out = [
        http_row(api, "booking_create", "booking create (16 connections)", 0.35, 100.0),
        http_row(api, "slot_search", "slot search", 0.5, None),
        http_row(api, "bookings_list", "my bookings (authenticated GET)", None, None),
    ]
    n, noop = dig(workers, "notifications_per_s"), dig(workers, "noop_per_s")
    # The bench's own ratio: the median of its rounds' ratios (each of two phases a second apart), which
    # is not the ratio of the two medians; older results without rounds have only the rates.
    ratio = dig(workers, "ratio_notifications_to_noop") or (round(n / noop, 3) if n and noop else None)
    spread = dig(workers, "ratio_range")
    cpu = dig(workers, "notifications_worker_cpu_ms_per_message")
    load_w = dig(workers, "load_average_1m")
    out.append(
        Row(
            "notifications (email to an SMTP sink)",
            f"{n}/s, email p50 {dig(workers, 'email_latency_ms', 'p50')} ms"
            + (f", worker CPU {cpu} ms/email" if cpu else "")
            + (
                f", {per_job} notices per job"
                if (per_job := dig(workers, "worker_settings", "notices_per_job"))
                else ""
            )
            + (
                f"; median of {dig(workers, 'rounds')} rounds, ratio {spread[0]}-{spread[1]}"
                if isinstance(spread, list) and spread
                else ""
            )
            if n
            else "-",
            f"no-op actor {noop}/s" if noop else "-",
            ratio,
            ">= 0.4x",
            None if ratio is None else ratio >= 0.4,
            dig(workers, "sink_cpu_share"),  # the SMTP sink is this figure's other party
            max(load_w) if isinstance(load_w, list) and load_w else None,
        )
    )
    lis = dig(events, "lis_to_notification_latency")
    out.append(
        Row(
            "LIS result -> notification queued (20 msg/s)",
            f"p50 {lis.get('p50_ms')} ms, p99 {lis.get('p99_ms')} ms" if lis else "-",
            "-",
            None,
            "-",
            None,
        )
    )
    svip = dig(events, "svip1_latency_under_standard_backlog")
    p99 = svip.get("svip1_p99_ms") if svip else None
    out.append(
        Row(
            "SVIP1 result under a standard backlog",
            f"p50 {svip['svip1_p50_ms']} ms, p99 {p99} ms, backlog {svip['standard_backlog']}"
            if svip
            else "-",
            "-",
            None,
            "p99 < 1000 ms with 50,000 backlogged",
            None if not svip or p99 is None else p99 < 1000 and svip.get("standard_backlog", 0) >= 50_000,
            None,
            svip.get("load_average_1m") if svip else None,
        )
    )
    thr = dig(events, "throughput")
    out.append(
        Row(
            "lis-testresult stored",
            f"{thr.get('lis_testresult_stored_msgs_per_s')} msg/s" if thr else "-",
            f"raw consume {thr.get('raw_consume_msgs_per_s')} msg/s" if thr else "-",
            dig(thr, "ratio_stored_vs_raw"),
            "-",
            None,
            load_average_1m=dig(thr, "load_average_1m"),
        )
    )
    out.extend(operator_rows(op))
    return out


def operator_rows(op: dict[str, Any] | None) -> list[Row]:
    """One row per target of issue 14 that bench/operator.py checked (pass/fail as it judged them)."""
    targets = dig(op, "targets")
    if not targets:
        return [Row("operator", "-", "-", None, "-", None)]
    many: Callable[[str], Any] = lambda k: dig(op, "many_platforms", k)  # noqa: E731
    one: Callable[[str], Any] = lambda k: dig(op, "one_platform", k)  # noqa: E731
    steady = dig(op, "many_platforms", "steady_state")
    baselines = {
        "children vs direct apply": (
            f"direct apply {dig(op, 'baseline_direct_apply_many_s')} s (before, after: "
            f"{dig(op, 'baseline_direct_apply_many_before_after_s')})",
            f"{many('time_to_all_children_s')} s to all children, {many('time_to_all_ready_s')} s to Ready",
        ),
        "reconciles per platform": (
            "-",
            f"{many('converge_reconciles')} reconciles, {many('converge_checks')} checks "
            f"({many('converge_checks_by_trigger')}), "
            f"{many('converge_status_writes')} status writes, {many('converge_api_requests')} requests",
        ),
        "API requests per idle resync": (
            "-",
            f"{dig(steady, 'resync_passes')} resync passes: {dig(steady, 'api_requests')} requests, "
            f"{dig(steady, 'mutating_requests')} writes",
        ),
        "RSS": ("-", f"{many('operator_rss_mib')} MiB now, peak {many('operator_peak_rss_mib')} MiB, "
                     f"idle {dig(op, 'operator_idle_rss_mib')} MiB"),
    }  # fmt: skip
    rows = []
    for t in targets:
        name = str(t["target"])
        baseline, detail = next((v for k, v in baselines.items() if k in name), ("-", ""))
        if name.startswith("1 platform"):
            baseline = f"direct apply {dig(op, 'baseline_direct_apply_s')} s"
            detail = f"{one('time_to_all_children_s')} s to all children"
        ratio = t["measured"] if "x" in str(t["goal"]) else None
        measured = f"{t['measured']}" + (f" ({detail})" if detail else "")
        rows.append(Row(f"operator: {name}", measured, baseline, ratio, str(t["goal"]), bool(t["met"])))
    return rows


def render(table: list[Row]) -> str:
    """The rows as a Markdown table."""
    head = ["figure", "measured", "baseline (same run)", "ratio", "goal", "met", "client/sink CPU", "load"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        cells = [
            r.figure,
            r.measured,
            r.baseline,
            "-" if r.ratio is None else f"{r.ratio}x",
            r.goal,
            {True: "yes", False: "NO", None: "-"}[r.met],
            "-" if r.client_cpu_share is None else f"{r.client_cpu_share:.0%}",
            "-" if r.load_average_1m is None else str(r.load_average_1m),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    table = rows(args.results)
    print(render(table))
    doc = {
        "benchmark": "summary",
        "cpu_cores": os.cpu_count(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 1),
        "rows": [asdict(r) for r in table],
    }
    (args.results / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
