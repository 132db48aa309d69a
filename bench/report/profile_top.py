"""The hottest functions of a py-spy speedscope profile, as text (for notes and quick comparisons).

    python bench/report/profile_top.py bench/results/profile-create.speedscope.json [--top 30]
        [--thread-filter MainThread] [--under FUNCTION]

Prints, per function (name, file:line of its definition), the share of samples it was on the stack
(inclusive) and on top of it (self). Idle samples (threads waiting in select/epoll or on a lock with
py-spy's default --idle off) are not recorded at all, so shares are of busy samples. `--under NAME` keeps
only the samples whose stack passes through a frame named NAME (e.g. create_booking) and ranks within them.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any


def load(path: Path) -> tuple[list[dict[str, Any]], list[tuple[str, list[list[int]], list[float]]]]:
    """(frames, [(profile name, samples, weights)]) of a speedscope file."""
    doc = json.loads(path.read_text())
    frames: list[dict[str, Any]] = doc["shared"]["frames"]
    profiles = [
        (p.get("name", ""), p["samples"], p.get("weights") or [1.0] * len(p["samples"]))
        for p in doc["profiles"]
        if p.get("type") == "sampled"
    ]
    return frames, profiles


def label(frame: dict[str, Any]) -> str:
    """`name (file:line)` with the file shortened to its package-relative tail."""
    file = str(frame.get("file") or "")
    for marker in ("site-packages/", "/services/", "/core/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{frame.get('name')} ({file}:{frame.get('line', '?')})"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("profile", type=Path)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--thread-filter", default="", help="only profiles (threads) whose name contains this")
    ap.add_argument("--under", default="", help="only samples with a frame of this function name")
    args = ap.parse_args()
    frames, profiles = load(args.profile)
    inclusive: Counter[int] = Counter()
    own: Counter[int] = Counter()
    total = 0.0
    for name, samples, weights in profiles:
        if args.thread_filter and args.thread_filter not in name:
            continue
        for stack, weight in zip(samples, weights, strict=True):
            if args.under and not any(frames[i].get("name") == args.under for i in stack):
                continue
            total += weight
            for i in set(stack):
                inclusive[i] += weight  # type: ignore[assignment]
            if stack:
                own[stack[-1]] += weight  # type: ignore[assignment]
    if not total:
        print("no samples")
        return 1
    unit = json.loads(args.profile.read_text())["profiles"][0].get("unit", "samples")
    scope = f" under {args.under}" if args.under else ""
    print(f"{args.profile.name}: {total:.1f} {unit} of samples{scope}")
    print(f"{'incl%':>6} {'self%':>6}  function")
    for i, w in inclusive.most_common(args.top):
        print(f"{100 * w / total:6.1f} {100 * own[i] / total:6.1f}  {label(frames[i])}")
    print(f"\n{'self%':>6}  function (by self time)")
    for i, w in own.most_common(args.top):
        print(f"{100 * w / total:6.1f}  {label(frames[i])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
