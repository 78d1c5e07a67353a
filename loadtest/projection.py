"""Capacity projection: from measured requests/s per core to cores and hosts for a daily volume.

Pure arithmetic, stated so the report can print it next to the numbers::

    req/day/core   = R_core × 86,400
    average req/s  = D / 86,400
    cores(avg)     = ceil(D / 86,400 / R_core)
    cores(peak)    = ceil(P × D / 86,400 / R_core)          P = peak factor (default 3)
    hosts          = ceil(cores / (C_host − C_reserved))    C = cores per host

``R_core`` is the highest arrival rate one bidder process sustained on one pinned core with p99
inside the latency budget (measured, not the CPU-saturated maximum), so the projection already
keeps the latency headroom; it assumes processes scale linearly across cores and hosts (the
2-process run shows how true that was on the measuring machine) and excludes Redis, whose CPU
per request the report shows separately.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class ProjectionRow:
    daily_requests: int
    label: str  # "average" | "peak ×3"
    rps: float
    cores: int
    hosts: int


def cores_needed(rps: float, rps_per_core: float) -> int:
    if rps_per_core <= 0:
        raise ValueError("rps_per_core must be > 0")
    return max(1, math.ceil(rps / rps_per_core - 1e-9))


def hosts_needed(cores: int, host_cores: int, reserved_cores: int) -> int:
    usable = host_cores - reserved_cores
    if usable <= 0:
        raise ValueError("host_cores must exceed reserved_cores")
    return max(1, math.ceil(cores / usable))


def project(rps_per_core: float, daily_volumes: list[int], *, peak_factor: float = 3.0,
            host_cores: int = 32, reserved_cores: int = 2) -> list[ProjectionRow]:
    """One row per (volume, average|peak)."""
    rows: list[ProjectionRow] = []
    for daily in daily_volumes:
        avg = daily / SECONDS_PER_DAY
        for label, rps in (("average", avg), (f"peak ×{peak_factor:g}", avg * peak_factor)):
            cores = cores_needed(rps, rps_per_core)
            rows.append(ProjectionRow(daily, label, rps, cores,
                                      hosts_needed(cores, host_cores, reserved_cores)))
    return rows


def human(n: float) -> str:
    """1_000_000_000 -> '1 B', 10_000_000_000 -> '10 B', 2_500_000 -> '2.5 M'."""
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g} {suffix}"
    return f"{n:.3g}"


def format_projection(rps_per_core: float, rows: list[ProjectionRow], *, host_cores: int,
                      reserved_cores: int, peak_factor: float) -> str:
    lines = [
        f"R_core = {rps_per_core:,.0f} req/s per core (p99 within budget)  ->  "
        f"{rps_per_core * SECONDS_PER_DAY:,.0f} req/day per core ({human(rps_per_core * SECONDS_PER_DAY)})",
        f"cores = ceil(rate / R_core); hosts = ceil(cores / ({host_cores} - {reserved_cores} reserved));"
        f" peak = {peak_factor:g} × average",
        f"{'req/day':>10} {'load':>10} {'req/s':>12} {'cores':>8} {'hosts':>7}",
    ]
    for r in rows:
        lines.append(f"{human(r.daily_requests):>10} {r.label:>10} {r.rps:>12,.0f} {r.cores:>8,} "
                     f"{r.hosts:>7,}")
    return "\n".join(lines)
