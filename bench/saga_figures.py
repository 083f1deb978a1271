"""Figures of an ``order_saga.py`` run: percentiles, hop latencies, where lost orders stand,
and the printed report."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

import aiohttp
from saga_services import Observed


def percentile(sorted_values: list[float], share: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(share * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def per_order_ms(cpu: dict[str, float | None], orders: int) -> dict[str, float | None]:
    """CPU milliseconds per completed order of the bridge, PostgreSQL and the broker."""
    return {
        name: round(seconds * 1000 / orders, 2) if orders else None
        for name, seconds in cpu.items()
        if name != "bench" and seconds is not None
    }


def summed(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present), 1) if present else None


def stage_latencies(observed: Observed, big: set[str]) -> dict[str, float | None]:
    """Median time of each hop, from when the bench saw one message to when it saw the next."""
    seen = observed.first_seen
    hops = {
        "event->ReserveInventory": (observed.sent_at, seen["ReserveInventory"], None),
        "ReserveInventory->ChargePayment": (seen["ReserveInventory"], seen["ChargePayment"], None),
        "ChargePayment->completed": (seen["ChargePayment"], observed.completed_at, False),
        "ChargePayment->approval": (seen["ChargePayment"], seen["approval"], True),
        "approval->completed": (seen["approval"], observed.completed_at, True),
    }
    medians: dict[str, float | None] = {}
    for name, (start, end, approval) in hops.items():
        values = sorted(
            (end[o] - start[o]) * 1000
            for o in observed.sent_at
            if o in start and o in end and (approval is None or (o in big) == approval)
        )
        medians[name] = rounded(percentile(values, 0.5))
    return medians


def latency_windows(
    observed: Observed, first_send: float, seconds: float = 10.0
) -> list[dict[str, float | int | None]]:
    """p50 and p99 latency of the orders sent in each ``seconds`` of the run, by send time: in
    an open-loop run, whether the latency holds or grows from the first window to the last."""
    windows: dict[int, list[float]] = {}
    for order, sent in observed.sent_at.items():
        if order in observed.completed_at:
            latency = (observed.completed_at[order] - sent) * 1000
            windows.setdefault(int((sent - first_send) // seconds), []).append(latency)
    found: list[dict[str, float | int | None]] = []
    for number in sorted(windows):
        values = sorted(windows[number])
        found.append(
            {
                "from_s": number * seconds,
                "to_s": (number + 1) * seconds,
                "orders": len(values),
                "p50": rounded(percentile(values, 0.5)),
                "p99": rounded(percentile(values, 0.99)),
            }
        )
    return found


async def diagnose(base_url: str, observed: Observed, lost: list[str]) -> dict[str, Any]:
    """Where the lost orders stand: which messages the services saw, the bridge's view."""
    steps: Counter[str] = Counter()
    for order_id in lost:
        kinds = observed.per_order.get(order_id, {})
        seen = [k for k in ("ReserveInventory", "ChargePayment", "approval") if kinds.get(k)]
        steps["saw " + ("+".join(seen) if seen else "nothing")] += 1
    states: Counter[str] = Counter()
    samples: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for order_id in lost[:200]:
            try:
                async with session.get(
                    f"{base_url}/processes", params={"correlationKey": order_id}
                ) as r:
                    items = (await r.json()).get("items", []) if r.status == 200 else None
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                states[f"query failed: {type(exc).__name__}"] += 1
                continue
            if items is None:
                states["query failed"] += 1
            elif not items:
                states["no process"] += 1
            else:
                p = items[0]
                states[f"{p['status']} at {p['currentState'] or p['lastState']}"] += 1
                if len(samples) < 3:
                    samples.append(
                        {
                            "orderId": order_id,
                            "process": p["id"],
                            "status": p["status"],
                            "state": p["currentState"] or p["lastState"],
                            "error": p["error"],
                        }
                    )
    return {
        "services_saw": dict(steps),
        "bridge_says": dict(states),
        "samples": samples,
        "first_lost": lost[:5],
    }


def window_lines(windows: list[dict[str, Any]]) -> list[str]:
    if len(windows) < 2:
        return []
    cells = ", ".join(f"{w['from_s']:g}-{w['to_s']:g} s {w['p50']}/{w['p99']}" for w in windows)
    return [f"  p50/p99 ms by send   {cells}"]


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def report(r: dict[str, Any]) -> None:
    lat = r["latency_ms"]
    if r["rate_per_s"]:
        behind = r["send_behind_schedule_ms"]
        pace = (
            f"open loop at {r['rate_per_s']}/s for {r['duration_s']} s "
            f"(sends behind schedule p99 {behind['p99']} ms, max {behind['max']} ms)"
        )
    elif r["concurrency"]:
        pace = f"at most {r['concurrency']} in flight"
    else:
        pace = "flat out"
    lines = [
        "",
        f"order saga bench, {r['database']}, {r['date']}",
        f"  shape                {shape_line(r)}",
        f"  orders sent          {r['orders_sent']} ({r['needing_approval']} need approval), "
        f"{pace}, sent in {r['send_s']} s",
        f"  completed            {r['completed']}",
        f"  completed orders/s   {r['completed_per_s']} "
        f"(over {r['window_s']} s, first send to last completion)",
        f"  latency ms           p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}  "
        f"max {lat['max']}",
        f"  median per hop ms    {r['stage_p50_ms']}",
        *window_lines(r.get("latency_windows_ms") or []),
        f"  lost orders          {r['lost']} "
        f"(not completed {r['timeout_s']} s after the last send)",
        f"  duplicated completions         {r['duplicated_completions']}",
        f"  redeliveries (same ce_id)      {r['redelivered_messages_same_ce_id']}",
        f"  extra distinct msgs per order  {r['extra_distinct_messages_per_order']}, "
        f"approvals for small orders {r['unexpected_approvals']}",
    ]
    if r["approval_failures"] or r["stray_records"]:
        lines.append(
            f"  approval failures {r['approval_failures']}, stray records {r['stray_records']}"
        )
    lines += [
        f"  bridge peak RSS      {r['bridge_peak_rss_mib']} MiB "
        f"(after warm-up {r['bridge_rss_after_warmup_mib']} MiB)"
        + _by_process(r["bridge_peak_rss_mib_by_process"], " MiB"),
        *cpu_lines(r),
    ]
    if r["postgres"]:
        lines += postgres_lines(r["postgres"])
    if "lost_diagnosis" in r:
        lines.append(f"  LOST: {json.dumps(r['lost_diagnosis'])}")
    if not r["bridge_alive_at_end"]:
        lines.append(
            f"  A BRIDGE PROCESS EXITED {r['bridge_exited_s_after_first_send']} s after the first "
            f"send; exit codes {r.get('bridge_exit_codes')} (0 and 'stopping...' on its stderr: "
            "it got SIGTERM/SIGINT)"
        )
    if r.get("idle_cpu_percent_of_a_core"):
        idle = r["idle_cpu_percent_of_a_core"]
        lines.append(
            f"  idle CPU % of a core over {r['idle_s']} s: "
            + ", ".join(f"{name} {value}" for name, value in idle.items())
        )
    lines.append(f"  bridge stderr        {r['bridge_log']}")
    print("\n".join(lines))
    print(json.dumps(r, separators=(",", ":")))


def cpu_lines(r: dict[str, Any]) -> list[str]:
    """CPU seconds of the bridge (per process when there are several), the bench, PostgreSQL
    and the broker; and per completed order."""
    cpu = r["cpu_s"]
    others = [f"{k} {cpu[k]}" for k in ("postgres", "broker") if cpu.get(k) is not None]
    per_process = {k.split(":", 1)[1]: v for k, v in cpu.items() if k.startswith("bridge:")}
    per_order = [f"{k} {v}" for k, v in r["cpu_ms_per_order"].items() if ":" not in k]
    return [
        f"  CPU seconds          bridge {r['bridge_cpu_s']}, bench {r['bench_cpu_s']}"
        + "".join(f", {other}" for other in others)
        + _by_process(per_process, " s"),
        f"  CPU ms per order     {', '.join(per_order)}",
    ]


def shape_line(r: dict[str, Any]) -> str:
    if r["shape"] == "production":
        return (
            f"production: {r['workers']} bridge worker + bridge web, {r['partitions']} "
            f"partition(s), consumer group {r['consumer_group']}"
        )
    return f"dev: one bridge dev process, {r['partitions']} partition(s)"


def _by_process(values: dict[str, float | None], unit: str) -> str:
    if len(values) < 2:
        return ""
    return " [" + ", ".join(f"{name} {value}{unit}" for name, value in values.items()) + "]"


def postgres_lines(pg: dict[str, Any]) -> list[str]:
    by_table = pg["rows_written_per_order_by_table"]

    def written(counts: dict[str, float]) -> float:
        return round(counts["ins"] + counts["upd"] + counts["del"], 2)

    tables = ", ".join(
        f"{table} {written(counts)}"
        for table, counts in sorted(by_table.items(), key=lambda item: -written(item[1]))
    )
    in_place = ", ".join(
        f"{table} {counts['hot']} of {counts['upd']}"
        for table, counts in sorted(by_table.items())
        if counts["upd"]
    )
    return [
        f"  postgres per order   rows written {pg['rows_written_per_order']}, "
        f"commits {pg['commits_per_order']}, rollbacks {pg['rollbacks_per_order']}, "
        f"WAL {pg['wal_bytes_per_order']} bytes",
        f"  rows per order by table  {tables}",
        f"  updates without index entries (HOT) per order  {in_place or 'no updates'}",
    ]
