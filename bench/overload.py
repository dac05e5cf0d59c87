"""Overload: what one process sheds below, at and above its capacity, side by side.

    python bench/overload.py [--rounds 3] [--seconds 5] [--overload-seconds 8]
                             [--multiplier 3] [--closed-share 0.7]
                             [--sweep-concurrency 1,2,3,4,6,8]
                             [--server-setting NAME=VALUE ...] [--data-dir .arbor/bench-pgdata]

Starts an embedded PostgreSQL (fsync off) under --data-dir, seeds the `bench` preset (a rerun
reuses it), starts the service as a subprocess with its render caches off (bench/loadgen.py:
the workload, the client, the CPU meters), then:

  (a) unloaded: one request at a time -> p50, p99; then each kind alone (first pages,
      continuations), one at a time -> the server's and PostgreSQL's CPU per request: what
      weighs the overload's goodput in render work (below);
  (b) the peak: closed loop, 16 clients, no think time (the service runs at capacity);
  (c) --rounds rounds, side by side (this machine's speed drifts within minutes, so every
      figure is compared with ones measured in the same rounds), each phase --seconds long:
        * closed loop, no think time, 16 clients: the round's peak, which sets the rates of
          the phases after it (their goodput is also reported against the peaks of all
          rounds); then 64 clients (also at the peak);
        * open loop, Poisson arrivals at 50% and 80% of the round's peak;
        * closed loops of 1, 4, 16 and 64 clients whose think time is chosen so that they
          offer --closed-share of the round's peak in all (no think time for a single client
          that cannot);
        * open loop at --multiplier x the round's peak for --overload-seconds; "steady" leaves
          out the first second of each (the backlog of the moment the overload began).
      Closed-loop clients wait Retry-After (1 s) after a 503, as the README asks clients to.

Under overload the priorities serve first pages and shed continuations, which cost less: the
goodput is also printed in render work (each 200 weighted by its kind's CPU per request), for
information; the target counts requests.

Targets (exit status 1 when one fails): no 503 at 50% and 80% nor from the closed loops with
think time; at --multiplier x, steady: goodput >= 90% of the peak, 503 p99 <= 5 ms, 200 p99
<= 1.5x the 200 p99 at 80%; no status other than 200 and 503.

--sweep-concurrency instead compares `concurrency_limit` values (changed live, interleaved in
rounds): the peak goodput and the latency at 70% of it for each.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import loadgen as lg  # noqa: E402
from harness import free_port, stop_process, verdict  # noqa: E402
from storage import seeding  # noqa: E402
from storage.embedded import FAST_UNSAFE_OPTIONS, EmbeddedPostgres  # noqa: E402

GOODPUT_TARGET = 0.90
SHED_P99_TARGET_MS = 5.0
ADMITTED_P99_RATIO_TARGET = 1.5
STEADY_AFTER_S = 1.0
QUIET_OTHER_CORES = 0.25   # a phase is "quiet" when processes not ours used less than this


@dataclass
class Phase:
    name: str
    results: list = field(default_factory=list)
    seconds: float = 0.0
    rounds: list = field(default_factory=list)     # per round: summary dicts
    parts: list = field(default_factory=list)      # per round: results
    cpu: list = field(default_factory=list)
    episodes: int = 0
    shed_by_reason: dict = field(default_factory=dict)

    def add(self, results: list, seconds: float, cpu: dict, before: dict, after: dict) -> dict:
        self.results += results
        self.parts.append(results)
        self.seconds += seconds
        s = lg.summary(results, seconds)
        self.rounds.append(s)
        self.cpu.append(cpu)
        self.episodes += after.get("overload_episodes", 0) - before.get("overload_episodes", 0)
        for k, v in after.get("shed_by_reason", {}).items():
            self.shed_by_reason[k] = (self.shed_by_reason.get(k, 0) + v
                                      - before.get("shed_by_reason", {}).get(k, 0))
        return s


async def _measured(phases: dict, name: str, port: int, meter, coro, seconds: float) -> dict:
    before = await lg.admission(port)
    c0 = meter.read()
    results = await coro
    cpu = lg.CpuMeter.rates(c0, meter.read())
    after = await lg.admission(port)
    s = phases.setdefault(name, Phase(name)).add(results, seconds, cpu, before, after)
    await asyncio.sleep(0.5)   # stragglers drain
    return s


def _think(clients: int, rate: float, response: float) -> float:
    """Mean think time for `clients` closed-loop users to offer `rate` per second in all."""
    return max(0.0, clients / rate - response)


async def run(args, port: int, proc, dsn: str, roots: dict, postmaster: int | None) -> int:
    pool = lg.Pool("127.0.0.1", port)
    await lg.wait_healthy(pool, proc)
    work = await lg.workload(dsn, roots, port)
    meter = lg.CpuMeter(proc.pid, postmaster)
    snap = await lg.admission(port)
    print(f"workload: {len(work.first_pages)} first pages (~120 reply nodes each), "
          f"{len(work.continuations)} continuation pages ({lg.CONTINUATION_SHARE:.0%} of "
          f"requests); admission: {'off' if not snap else snap['concurrency']} slots"
          + (f", target {snap['target_ms']:g} ms" if snap else ""))

    await lg.sequential(pool, work, 100)
    unloaded = await lg.sequential(pool, work, 500)
    lat = [r.latency for r in unloaded if r.status == 200]
    response = lg.percentile(lat, 50)
    print(f"\n(a) unloaded, one at a time: p50 {lg.ms(lat, 50):.2f} ms, p99 {lg.ms(lat, 99):.2f} "
          f"ms ({len(lat) / sum(lat):.0f} req/s)")

    # What each kind of request costs, one at a time: while overloaded, priorities admit first
    # pages and shed continuations, so the admitted mix is dearer than the peak's.
    costs = {}
    for kind in ("first_page", "continuation"):
        c0 = meter.read()
        await lg.sequential(pool, work.only(kind), 300)
        c1 = meter.read()
        costs[kind] = ((c1["server"] - c0["server"]) / 300 * 1e3,
                       (c1["postgres"] - c0["postgres"]) / 300 * 1e3)
    (fs, fp), (cs, cp) = costs["first_page"], costs["continuation"]
    weight = {k: v[0] + v[1] for k, v in costs.items()}
    print(f"    CPU per request, one at a time: first page {fs:.2f} ms server + {fp:.2f} ms "
          f"PostgreSQL, continuation {cs:.2f} + {cp:.2f} ms: a first page costs "
          f"{weight['first_page'] / weight['continuation']:.2f}x a continuation")
    args.weights = weight

    res = await lg.closed_loop(pool, work, 16, 0.0, args.seconds)
    peak0 = lg.summary(res, args.seconds)["goodput"]
    print(f"(b) closed loop, 16 clients, no think time: {peak0:.0f} renders/s")

    if args.sweep_concurrency:
        return await _sweep(args, port, pool, work, meter, peak0)

    # Each phase is made from the peak measured at the start of its round (the 16-client
    # closed loop): the machine's speed drifts, and a rate fixed from (b) may be over the
    # capacity of a later minute.
    plan = [("zero-think closed, 16", lambda pk: lg.closed_loop(pool, work, 16, 0.0,
                                                                 args.seconds), args.seconds),
            ("zero-think closed, 64", lambda pk: lg.closed_loop(pool, work, 64, 0.0,
                                                                 args.seconds), args.seconds),
            ("Poisson 50%", lambda pk: lg.open_loop(pool, work, 0.5 * pk, args.seconds, seed=5),
             args.seconds),
            ("Poisson 80%", lambda pk: lg.open_loop(pool, work, 0.8 * pk, args.seconds, seed=8),
             args.seconds)]
    for n in (1, 4, 16, 64):
        plan.append((f"closed {n}, think time",
                     lambda pk, n=n: lg.closed_loop(
                         pool, work, n, _think(n, args.closed_share * pk, response),
                         args.seconds, seed=n), args.seconds))
    plan.append((f"Poisson {args.multiplier:g}x",
                 lambda pk: lg.open_loop(pool, work, args.multiplier * pk, args.overload_seconds,
                                         seed=3), args.overload_seconds))
    configs = [dict(pair.split("=", 1) for pair in c.split(",")) for c in args.config] or [{}]
    print(f"\n(c) {args.rounds} rounds of {len(plan)} phases ({args.seconds:g} s each, the "
          f"overload {args.overload_seconds:g} s); rates are shares of the round's peak (its "
          f"first phase); closed loops with think time offer {args.closed_share:.0%} of it"
          + (f"; in each round once per configuration: {args.config}" if args.config else ""))
    print(f"{'round':>5} {'cfg':>3} {'phase':<24} {'offered/s':>9} {'goodput/s':>9} {'503':>6} "
          f"{'200 p50':>8} {'200 p99':>8} {'503 p99':>8} {'srv':>5} {'pg':>5} {'gen':>5} {'other':>5}")
    by_config: list[dict[str, Phase]] = [{} for _ in configs]
    for i in range(args.rounds):
        for k, config in enumerate(configs):
            if config:
                await lg.set_settings(port, config)
                await lg.sequential(pool, work, 5)      # the service picks it up
            peak = peak0
            for name, make, seconds in plan:
                phases = by_config[k]
                s = await _measured(phases, name, port, meter, make(peak), seconds)
                if name == "zero-think closed, 16":
                    peak = s["goodput"]
                cpu = phases[name].cpu[-1]
                print(f"{i + 1:>5} {k + 1:>3} {name:<24} {s['offered']:>9.0f} "
                      f"{s['goodput']:>9.0f} {s['shed']:>6} {s['ok_p50']:>8.2f} "
                      f"{s['ok_p99']:>8.2f} {s['shed_p99']:>8.2f} {cpu['server']:>5.2f} "
                      f"{cpu['postgres']:>5.2f} {cpu['generator']:>5.2f} {cpu['other']:>5.2f}")
    pool.close()
    status = 0
    for k, config in enumerate(configs):
        if len(configs) > 1:
            print(f"\n=== configuration {k + 1}: {args.config[k]}"
                  + (" (the verdict)" if k == 0 else " (for comparison)"))
        code = _report(args, by_config[k], plan, peak0, pool)
        status = status if k else code
    return status


def _steady(phase: Phase, seconds: float) -> tuple[list, float]:
    """The overload's results without the first second of each round."""
    out = []
    for part in phase.parts:
        if part:
            t0 = min(r.scheduled for r in part)
            out += [r for r in part if r.scheduled >= t0 + STEADY_AFTER_S]
    return out, len(phase.parts) * (seconds - STEADY_AFTER_S)


def _report(args, phases: dict, plan: list, peak0: float, pool) -> int:
    print(f"\nall rounds ({args.rounds}); peak = the 16-client closed loop without think time "
          f"in the same rounds")
    peak = phases["zero-think closed, 16"]
    s_peak = lg.summary(peak.results, peak.seconds)
    print(f"{'phase':<24} {'offered/s':>9} {'goodput':>14} {'503s':>7} {'200 p50':>8} "
          f"{'200 p99':>8} {'p99 by round':>19} {'503 p99':>8} {'episodes':>8}  shed by reason")
    rows = {}
    for name, _, _ in plan:
        ph = phases[name]
        s = rows[name] = lg.summary(ph.results, ph.seconds)
        p99s = [r["ok_p99"] for r in ph.rounds]
        reasons = {k: v for k, v in ph.shed_by_reason.items() if v}
        print(f"{name:<24} {s['offered']:>9.0f} {s['goodput']:>6.0f} "
              f"({s['goodput'] / s_peak['goodput']:>4.0%}) {s['shed']:>7} {s['ok_p50']:>8.2f} "
              f"{s['ok_p99']:>8.2f} {min(p99s):>9.1f}-{max(p99s):<9.1f} {s['shed_p99']:>8.2f} "
              f"{ph.episodes:>8}  {reasons or ''}")
    over_name = plan[-1][0]
    over = phases[over_name]
    steady, steady_s = _steady(over, args.overload_seconds)
    st = lg.summary(steady, steady_s)
    p80 = rows["Poisson 80%"]
    share = st["goodput"] / s_peak["goodput"]
    ratio = st["ok_p99"] / p80["ok_p99"]
    print(f"\n{over_name}, steady (from {STEADY_AFTER_S:g} s into each round): goodput "
          f"{st['goodput']:.0f}/s = {share:.0%} of the peak; 200 p50 {st['ok_p50']:.2f} ms, p99 "
          f"{st['ok_p99']:.2f} ms = {ratio:.2f}x the 200 p99 at 80% ({p80['ok_p99']:.2f} ms); "
          f"503 p50 {st['shed_p50']:.2f} ms, p99 {st['shed_p99']:.2f} ms; 503s {st['shed']:,}, "
          f"200s {st['ok']:,}")
    whole = lg.summary(over.results, over.seconds)
    print(f"{over_name}, whole rounds (each begins with an overload's onset): 200 p99 "
          f"{whole['ok_p99']:.2f} ms, 503 p99 {whole['shed_p99']:.2f} ms, goodput "
          f"{whole['goodput'] / s_peak['goodput']:.0%} of the peak")
    by_kind = {}
    for kind in ("first_page", "continuation"):
        rs = [r for r in steady if r.kind == kind]
        by_kind[kind] = (sum(r.status == 200 for r in rs), sum(r.status == 503 for r in rs))
    print(f"  steady, by kind (200/503): first pages {by_kind['first_page'][0]:,}/"
          f"{by_kind['first_page'][1]:,}, continuations {by_kind['continuation'][0]:,}/"
          f"{by_kind['continuation'][1]:,}")
    # The same goodput in render work (each 200 weighted by what its kind costs, measured one
    # at a time): the target counts requests, and under overload the priorities keep the
    # dearer kind (first pages), so the request count falls even when the work done does not.
    w = args.weights
    peak_work = sum(w[r.kind] for r in peak.results if r.status == 200) / peak.seconds
    steady_work = sum(w[r.kind] for r in steady if r.status == 200) / steady_s
    print(f"  steady goodput in render work (a 200 weighted by its kind's cost): "
          f"{steady_work / peak_work:.0%} of the peak's (informational; the target counts "
          f"requests)")
    # The most the target's measure allows under these priorities: all of the peak's work
    # done, in first pages only (refusals free, nothing lost to the overload).
    peak_rate = s_peak["goodput"]
    first_only = peak_work / w["first_page"]
    print(f"  ceiling: the peak's work done as first pages only would be {first_only:.0f}/s = "
          f"{first_only / peak_rate:.0%} of the peak's requests (the priorities keep first "
          f"pages, {w['first_page'] / w['continuation']:.2f}x a continuation; refusals "
          f"counted free)")
    cpu = {k: sum(c[k] for c in over.cpu) / len(over.cpu) for k in over.cpu[0]}
    print(f"  CPU under overload (cores): server {cpu['server']:.2f}, postgres "
          f"{cpu['postgres']:.2f}, generator {cpu['generator']:.2f}, other processes "
          f"{cpu['other']:.2f}; generator lag p99 {st['lag_p99']:.2f} ms, read delay p99 "
          f"{st['read_delay_p99']:.2f} ms; {pool.kernel_timestamps:,} answers timed by the "
          f"kernel")
    print(f"\nquiet rounds only (other processes < {QUIET_OTHER_CORES:g} cores during the phase; "
          f"in the others the machine's capacity of the moment is unknown):")
    for name, _, _ in plan:
        ph = phases[name]
        quiet = [(part, c) for part, c in zip(ph.parts, ph.cpu) if c["other"] < QUIET_OTHER_CORES]
        if not quiet:
            print(f"  {name:<24} no quiet round")
            continue
        rs = [r for part, _ in quiet for r in part]
        q = lg.summary(rs, len(quiet) * (ph.seconds / len(ph.parts)))
        print(f"  {name:<24} {len(quiet)} of {len(ph.parts)}: offered {q['offered']:.0f}/s, "
              f"goodput {q['goodput']:.0f}/s, 503s {q['shed']}, 200 p50 {q['ok_p50']:.2f} ms, "
              f"p99 {q['ok_p99']:.2f} ms, 503 p99 {q['shed_p99']:.2f} ms")
    others = [name for name in rows if rows[name]["other"]]
    closed = [name for name, _, _ in plan if name.startswith("closed ")]
    checks = [(rows["Poisson 50%"]["shed"] == 0,
               f"Poisson 50% ({rows['Poisson 50%']['offered']:.0f}/s): "
               f"{rows['Poisson 50%']['shed']} shed == 0"),
              (p80["shed"] == 0, f"Poisson 80% ({p80['offered']:.0f}/s): {p80['shed']} shed == 0")]
    for name in closed:
        s = rows[name]
        checks.append((s["shed"] == 0, f"{name} ({s['goodput']:.0f}/s, "
                       f"{s['goodput'] / s_peak['goodput']:.0%} of the peak): {s['shed']} shed == 0"))
    checks += [
        (share >= GOODPUT_TARGET, f"{over_name} steady goodput {share:.0%} of the peak "
                                  f">= {GOODPUT_TARGET:.0%}"),
        (st["shed_p99"] <= SHED_P99_TARGET_MS or not st["shed"],
         f"{over_name} steady 503 p99 {st['shed_p99']:.2f} ms <= {SHED_P99_TARGET_MS:g} ms"),
        (ratio <= ADMITTED_P99_RATIO_TARGET,
         f"{over_name} steady 200 p99 {st['ok_p99']:.2f} ms <= {ADMITTED_P99_RATIO_TARGET:g}x "
         f"the 200 p99 at 80% ({p80['ok_p99']:.2f} ms)"),
        (not others, f"answers other than 200 and 503: {others or 'none'}"),
    ]
    print()
    return verdict(checks)


async def _sweep(args, port: int, pool, work, meter, peak0: float) -> int:
    values = [int(v) for v in args.sweep_concurrency.split(",")]
    rows: dict[int, dict[str, list]] = {v: {"peak": [], "moderate": []} for v in values}
    rate = 0.7 * peak0
    print(f"\nsweep of concurrency_limit, {args.rounds} rounds: closed loop 16 without think "
          f"time (the peak), then Poisson at {rate:.0f}/s (70% of (b))")
    for i in range(args.rounds):
        for v in values:
            await lg.set_settings(port, {"concurrency_limit": v})
            await lg.sequential(pool, work, 5)      # picks the change up
            p = lg.summary(await lg.closed_loop(pool, work, 16, 0.0, args.seconds), args.seconds)
            await asyncio.sleep(0.5)
            m = lg.summary(await lg.open_loop(pool, work, rate, args.seconds, seed=i),
                           args.seconds)
            await asyncio.sleep(0.5)
            rows[v]["peak"].append(p)
            rows[v]["moderate"].append(m)
            print(f"  round {i + 1} limit {v:>3}: peak {p['goodput']:>5.0f}/s (200 p99 "
                  f"{p['ok_p99']:6.1f} ms, 503s {p['shed']}); at {rate:.0f}/s: 200 p50 "
                  f"{m['ok_p50']:6.2f} p99 {m['ok_p99']:6.2f} ms, 503s {m['shed']}")
    print(f"\n{'limit':>5} {'peak/s (by round)':>26} {'p50 at 70%':>11} {'p99 at 70%':>11}")
    for v in values:
        peaks = [p["goodput"] for p in rows[v]["peak"]]
        p50 = sorted(m["ok_p50"] for m in rows[v]["moderate"])
        p99 = sorted(m["ok_p99"] for m in rows[v]["moderate"])
        print(f"{v:>5} {sum(peaks) / len(peaks):>8.0f} ({min(peaks):.0f}-{max(peaks):.0f})"
              f"{'':>6} {p50[len(p50) // 2]:>11.2f} {p99[len(p99) // 2]:>11.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase")
    parser.add_argument("--overload-seconds", type=float, default=8.0)
    parser.add_argument("--multiplier", type=float, default=3.0)
    parser.add_argument("--closed-share", type=float, default=0.7,
                        help="what the closed loops with think time offer, share of the peak")
    parser.add_argument("--sweep-concurrency", default="",
                        help="compare these concurrency_limit values instead, e.g. 1,2,4,8")
    parser.add_argument("--server-setting", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--config", action="append", default=[], metavar="NAME=V,NAME=V",
                        help="live settings for a configuration compared side by side in every "
                             "round (repeatable; the first one's figures are the verdict)")
    parser.add_argument("--data-dir", default=str(ROOT / ".arbor" / "bench-pgdata"))
    args = parser.parse_args(argv)

    server = EmbeddedPostgres(args.data_dir, FAST_UNSAFE_OPTIONS)
    dsn = server.start()
    proc = None
    try:
        report = asyncio.run(seeding.seed_dsn(dsn, "bench"))
        settings = lg.cache_off_settings() + args.server_setting
        print(f"service settings: {' '.join(settings)}")
        port = free_port()
        proc = lg.start_service(dsn, port, settings)
        return asyncio.run(run(args, port, proc, dsn, report["roots"],
                               lg.postmaster_pid(args.data_dir)))
    finally:
        stop_process(proc)
        if server.started_here:
            server.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
