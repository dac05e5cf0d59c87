"""Fair shedding: polite clients next to one greedy client, side by side with the polite
clients alone.

    python bench/fair_shedding.py [--rounds 3] [--seconds 6] [--polite 20]
                                  [--polite-share 0.5] [--greedy-shares 20]
                                  [--server-setting NAME=VALUE ...]

Starts the service like bench/overload.py (render caches off, the `bench` preset, workload and
client from bench/loadgen.py) with `trusted_proxies=127.0.0.1`, so that every simulated client
has its own identity through `X-Forwarded-For` (10.1.0.<n> polite, 10.9.9.9 greedy). Measures
the peak (closed loop, 16 clients, no think time); a fair share is the peak over the number of
clients (polite + 1). Then --rounds rounds of:

  * the polite clients alone: each an open loop (Poisson) at --polite-share of a fair share;
  * the same, next to the greedy client (an open loop at --greedy-shares fair shares), with
    the per-client rate limits as the service ships them (the greedy client's excess gets
    429 before admission), and again with them off (`rate_limit_enabled`, changed live):
    admission alone sheds it (503). --rate-limits on|off runs only one of the two.

And, in the same rounds, the per-client budget (issue 11: "one client at 20x its budget next
to 20 polite clients"): the read budget keeps its default rate (`rate_limit_read` 3000 units
per 5 minutes = 10 units/s) over a --budget-window window instead of five minutes, so that a
phase of a few seconds spends it (a five-minute window first lets a burst of 3,000 units
through); polite clients read at --polite-budget of their budget, the greedy one at
--greedy-budget times its budget (rendered first pages cost 4 units, continuations 2:
rates below are in requests at 4 units, the upper bound).

Targets (exit status 1 when one fails), for each greedy phase: every polite request succeeds
and the polite clients' 200 p99 is at most 1.5x theirs alone (same rounds). What the greedy
client got is printed by status; in the budget phase it must be refused with 429, not 503.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import loadgen as lg  # noqa: E402
from harness import free_port, stop_process, verdict  # noqa: E402
from storage import seeding  # noqa: E402
from storage.embedded import FAST_UNSAFE_OPTIONS, EmbeddedPostgres  # noqa: E402

P99_RATIO_TARGET = 1.5
GREEDY = "10.9.9.9"


def _xff(address: str) -> bytes:
    return f"X-Forwarded-For: {address}\r\n".encode()


async def _phase(pool, work, polite: int, polite_rate: float, greedy_rate: float,
                 seconds: float, seed: int) -> list:
    out: list = []
    loops = [lg.open_loop(pool, work, polite_rate, seconds, client=f"10.1.0.{n}",
                          headers=_xff(f"10.1.0.{n}"), seed=seed * 100 + n, out=out)
             for n in range(1, polite + 1)]
    if greedy_rate:
        loops.append(lg.open_loop(pool, work, greedy_rate, seconds, client=GREEDY,
                                  headers=_xff(GREEDY), seed=seed * 100, out=out))
    await asyncio.gather(*loops)
    await asyncio.sleep(0.5)
    return out


async def run(args, port: int, proc, dsn: str, roots: dict, postmaster: int | None) -> int:
    pool = lg.Pool("127.0.0.1", port)
    await lg.wait_healthy(pool, proc)
    work = await lg.workload(dsn, roots, port)
    meter = lg.CpuMeter(proc.pid, postmaster)
    await lg.sequential(pool, work, 100)
    peak = lg.summary(await lg.closed_loop(pool, work, 16, 0.0, args.seconds),
                      args.seconds)["goodput"]
    share = peak / (args.polite + 1)
    polite_rate, greedy_rate = args.polite_share * share, args.greedy_shares * share
    print(f"peak (closed loop, 16 clients, no think time): {peak:.0f}/s; a fair share of "
          f"{args.polite + 1} clients: {share:.1f}/s")
    print(f"{args.polite} polite clients at {polite_rate:.1f}/s each ({args.polite_share:g} of "
          f"a share, {args.polite * polite_rate:.0f}/s in all); the greedy one at "
          f"{greedy_rate:.0f}/s ({args.greedy_shares:g} shares, "
          f"{greedy_rate / peak:.0%} of the peak); offered with it: "
          f"{(args.polite * polite_rate + greedy_rate) / peak:.0%} of the peak\n")
    budget_units = 3000 / 300 * args.budget_window  # the default rate over a shorter window
    budget_rate = 3000 / 300 / 4  # first pages per second within the default read budget
    b_polite, b_greedy = args.polite_budget * budget_rate, args.greedy_budget * budget_rate
    print(f"budget phases: rate_limit_read={budget_units:.0f}/{args.budget_window:g}seconds; "
          f"polite at {b_polite:.2f}/s each, the greedy one at {b_greedy:.0f}/s "
          f"({args.greedy_budget:g}x its budget)\n")
    phases = [("alone", 0.0, True)]
    if args.greedy_budget:
        phases += [("budget: alone", 0.0, True), ("budget: greedy 20x", b_greedy, True)]
    if args.rate_limits in ("on", "both"):
        phases.append(("greedy, rate limits on", greedy_rate, True))
    if args.rate_limits in ("off", "both"):
        phases.append(("greedy, rate limits off", greedy_rate, False))
    print(f"{'round':>5} {'phase':<24} {'polite ok':>10} {'polite p50':>10} {'polite p99':>10} "
          f"{'greedy 200/s':>12} {'greedy by status':<28} {'srv':>5} {'other':>5}")
    polite_all: dict[str, list] = {name: [] for name, _, _ in phases}
    greedy_all: dict[str, list] = {name: [] for name, _, _ in phases}
    p99s: dict[str, list] = {name: [] for name, _, _ in phases}
    for i in range(args.rounds):
        for name, g, limits_on in phases:
            budget = name.startswith("budget")
            await lg.set_settings(port, {
                "rate_limit_enabled": limits_on,
                "rate_limit_read": f"{budget_units:.0f}/{args.budget_window:g}seconds"
                                   if budget else None})  # null: the configured value
            if budget:
                await asyncio.sleep(args.budget_window)  # last phase's spending expires
            c0 = meter.read()
            res = await _phase(pool, work, args.polite, b_polite if budget else polite_rate,
                               g, args.seconds, i + 1)
            cpu = lg.CpuMeter.rates(c0, meter.read())
            polite = [r for r in res if r.client != GREEDY]
            greedy = [r for r in res if r.client == GREEDY]
            polite_all[name].extend(polite)
            greedy_all[name].extend(greedy)
            ok = [r.latency for r in polite if r.status == 200]
            p99s[name].append(lg.ms(ok, 99))
            statuses = dict(sorted(Counter(r.status for r in greedy).items()))
            print(f"{i + 1:>5} {name:<24} {len(ok) / max(1, len(polite)):>10.2%} "
                  f"{lg.ms(ok, 50):>10.2f} {lg.ms(ok, 99):>10.2f} "
                  f"{sum(r.status == 200 for r in greedy) / args.seconds:>12.0f} "
                  f"{str(statuses or ''):<28} {cpu['server']:>5.2f} {cpu['other']:>5.2f}")
    await lg.set_settings(port, {"rate_limit_enabled": True, "rate_limit_read": None})
    pool.close()

    def stats(rs: list) -> tuple[float, float, float, Counter]:
        ok = [r.latency for r in rs if r.status == 200]
        return (len(ok) / max(1, len(rs)), lg.ms(ok, 50), lg.ms(ok, 99),
                Counter(r.status for r in rs))

    checks = []
    for name, g, _ in phases:
        if not g:
            continue
        alone = "budget: alone" if name.startswith("budget") else "alone"
        a_ok, a50, a99, _ = stats(polite_all[alone])
        print(f"\nall rounds: polite {alone}: {a_ok:.2%} ok, p50 {a50:.2f} ms, p99 "
              f"{a99:.2f} ms (by round {min(p99s[alone]):.1f}-{max(p99s[alone]):.1f})")
        m_ok, m50, m99, m_status = stats(polite_all[name])
        g_ok, g50, g99, g_status = stats(greedy_all[name])
        ratio = m99 / a99
        print(f"  {name}: polite {m_ok:.2%} ok {dict(sorted(m_status.items()))}, p50 "
              f"{m50:.2f} ms, p99 {m99:.2f} ms (by round {min(p99s[name]):.1f}-"
              f"{max(p99s[name]):.1f}) = {ratio:.2f}x alone")
        print(f"    the greedy client: {dict(sorted(g_status.items()))}; its 200s p50 "
              f"{g50:.2f} ms, p99 {g99:.2f} ms; "
              f"{g_status[200] / (args.rounds * args.seconds):.0f} 200s/s = "
              f"{g_status[200] / (args.rounds * args.seconds) / peak:.0%} of the peak")
        checks += [(m_ok == 1.0, f"{name}: polite success {m_ok:.2%} == 100%"),
                   (ratio <= P99_RATIO_TARGET, f"{name}: polite p99 {m99:.2f} ms <= "
                                               f"{P99_RATIO_TARGET:g}x alone ({a99:.2f} ms)")]
        if name.startswith("budget"):
            checks.append((g_status[429] > 0 and g_status[503] == 0,
                           f"{name}: the greedy client refused with 429 ({g_status[429]}), "
                           f"not 503 ({g_status[503]})"))
    return verdict(checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="per phase")
    parser.add_argument("--polite", type=int, default=20, help="polite clients")
    parser.add_argument("--polite-share", type=float, default=0.5,
                        help="each polite client's rate, in fair shares")
    parser.add_argument("--greedy-shares", type=float, default=20.0,
                        help="the greedy client's rate, in fair shares")
    parser.add_argument("--rate-limits", choices=("both", "on", "off"), default="both",
                        help="greedy phases with the per-client rate limits on, off, or both")
    parser.add_argument("--budget-window", type=float, default=10.0,
                        help="seconds: the read budget's window in the budget phases")
    parser.add_argument("--polite-budget", type=float, default=0.5,
                        help="each polite client's rate in the budget phases, in budgets")
    parser.add_argument("--greedy-budget", type=float, default=20.0,
                        help="the greedy client's rate in the budget phases, in budgets "
                             "(0: no budget phases)")
    parser.add_argument("--server-setting", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--data-dir", default=str(ROOT / ".arbor" / "bench-pgdata"))
    args = parser.parse_args(argv)

    server = EmbeddedPostgres(args.data_dir, FAST_UNSAFE_OPTIONS)
    dsn = server.start()
    proc = None
    try:
        report = asyncio.run(seeding.seed_dsn(dsn, "bench"))
        settings = lg.cache_off_settings() + ["trusted_proxies=127.0.0.1"] + args.server_setting
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
