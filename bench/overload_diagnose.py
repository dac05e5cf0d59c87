"""Why goodput falls under overload: the peak and the overload side by side, per phase.

    python bench/overload_diagnose.py [--rounds 3] [--seconds 5] [--multiplier 3[,4...]]
                                      [--moderate 0.8] [--variant NAME=ROOT ...]
                                      [--config NAME=V,NAME=V ...] [--generator-nice 0,10]
                                      [--profile DIR] [--pin SERVER:PG:GEN]
                                      [--server-setting NAME=VALUE ...]

The service and PostgreSQL as bench/overload.py starts them: one server per --variant (the
checkout at ROOT; default this one), all on the one database, idle but for their turn. In
each round, for each case (variant x --config, live settings applied before its phases, x
--generator-nice, this process's niceness above the service's): the peak (closed loop, 16
clients, no think time), optionally Poisson at --moderate x that peak, then Poisson
arrivals at each --multiplier x that peak. Per phase: goodput; CPU per admitted render of
the server and of PostgreSQL, each split into user and system time; the server's voluntary
and involuntary context switches per render; the machine's steal time; the server's
event-loop lag (its arbor_event_loop_lag_seconds histogram); its garbage collections; how
the 503s were given (early, in the protocol, or by the middleware, by reason); overload
episodes. --profile: py-spy records the server during each phase (raw files in DIR, one per
phase; py-spy stops the process to sample it: compare shares, not rates). --pin: CPU lists
for taskset, e.g. 0:1:1 (the first server alone on CPU 0), a diagnosis of CPU sharing.
A diagnosis tool: no targets, exit status 0.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402

import loadgen as lg  # noqa: E402
from harness import free_port, stop_process  # noqa: E402
from storage import seeding  # noqa: E402
from storage.embedded import FAST_UNSAFE_OPTIONS, EmbeddedPostgres  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[float, float]:
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return int(f[11]) / CLK, int(f[12]) / CLK


def _ctx(pid: int) -> tuple[int, int]:
    v = n = 0
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("voluntary_ctxt_switches"):
                v = int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches"):
                n = int(line.split()[1])
    except OSError:
        pass
    return v, n


def _pg(postmaster: int) -> tuple[float, float]:
    f = open(f"/proc/{postmaster}/stat").read().rsplit(")", 1)[1].split()
    u = (int(f[11]) + int(f[13])) / CLK
    s = (int(f[12]) + int(f[14])) / CLK
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                g = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(g[1]) == postmaster:
                u += int(g[11]) / CLK
                s += int(g[12]) / CLK
    return u, s


def _steal() -> float:
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return f[7] / CLK


async def _metrics(port: int) -> dict:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
            text = await r.text()
    out = {"lag_sum": 0.0, "lag_count": 0.0, "lag_buckets": {}}
    for line in text.splitlines():
        if line.startswith("arbor_event_loop_lag_seconds_sum"):
            out["lag_sum"] = float(line.split()[-1])
        elif line.startswith("arbor_event_loop_lag_seconds_count"):
            out["lag_count"] = float(line.split()[-1])
        elif line.startswith("python_gc_collections_total"):
            gen = re.search(r'generation="(\d)"', line).group(1)
            out[f"gc{gen}"] = float(line.split()[-1])
        elif line.startswith("python_gc_objects_collected_total"):
            gen = re.search(r'generation="(\d)"', line).group(1)
            out[f"gcobj{gen}"] = float(line.split()[-1])
        elif line.startswith("arbor_event_loop_lag_seconds_bucket"):
            le = re.search(r'le="([^"]+)"', line).group(1)
            out["lag_buckets"][le] = float(line.split()[-1])
    return out


def _read(proc_pid: int, postmaster: int) -> dict:
    su, ss = _stat(proc_pid)
    pu, ps = _pg(postmaster)
    gv = os.times()
    v, n = _ctx(proc_pid)
    return {"su": su, "ss": ss, "pu": pu, "ps": ps, "gen": gv.user + gv.system,
            "steal": _steal(), "vcs": v, "ics": n, "wall": time.monotonic()}


async def phase(name, port, pid, postmaster, coro, seconds, profile_dir, tag):
    a0 = await lg.admission(port)
    m0 = await _metrics(port)
    spy = None
    if profile_dir:
        out = Path(profile_dir) / f"{tag}.raw"
        spy = subprocess.Popen([str(ROOT / ".venv/bin/py-spy"), "record", "-r", "997", "-d",
                                str(max(1, int(seconds) - 1)), "-f", "raw", "-o", str(out),
                                "-p", str(pid)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    c0 = _read(pid, postmaster)
    results = await coro
    c1 = _read(pid, postmaster)
    if spy:
        spy.wait()
    a1 = await lg.admission(port)
    m1 = await _metrics(port)
    s = lg.summary(results, seconds)
    wall = c1["wall"] - c0["wall"]
    renders = max(1, s["ok"])
    d = {k: c1[k] - c0[k] for k in c0}
    early = a1.get("shed_early", 0) - a0.get("shed_early", 0)
    reasons = {k: v - a0.get("shed_by_reason", {}).get(k, 0)
               for k, v in a1.get("shed_by_reason", {}).items()}
    lag_n = m1["lag_count"] - m0["lag_count"]
    lag_mean = (m1["lag_sum"] - m0["lag_sum"]) / lag_n * 1e3 if lag_n else float("nan")
    row = {"name": name, "goodput": s["goodput"], "offered": s["offered"], "shed": s["shed"],
           "p50": s["ok_p50"], "p99": s["ok_p99"], "shed_p99": s["shed_p99"],
           "srv": (d["su"] + d["ss"]) / wall, "srv_u_ms": d["su"] / renders * 1e3,
           "srv_s_ms": d["ss"] / renders * 1e3, "pg": (d["pu"] + d["ps"]) / wall,
           "pg_u_ms": d["pu"] / renders * 1e3, "pg_s_ms": d["ps"] / renders * 1e3,
           "gen": d["gen"] / wall, "steal": d["steal"] / wall,
           "vcs": d["vcs"] / renders, "ics": d["ics"] / renders, "lag_ms": lag_mean,
           "early": early, "reasons": {k: v for k, v in reasons.items() if v},
           "slot_ms": a1.get("slot_time_ms"),
           "queued": (sum(a1.get("queued_total", {}).values())
                      - sum(a0.get("queued_total", {}).values())),
           "results": results,
           "gc": {k: m1[k] - m0.get(k, 0) for k in m1 if k.startswith("gc")},
           "episodes": a1.get("overload_episodes", 0) - a0.get("overload_episodes", 0),
           "dbg": {k: v - a0.get("dbg", {}).get(k, 0) for k, v in a1.get("dbg", {}).items()
                   if v - a0.get("dbg", {}).get(k, 0)}}
    await asyncio.sleep(0.5)
    return row


def _print(i, k, r):
    print(f"{i:>2} {k:>2} {r['name']:<6} {r['offered']:>6.0f} {r['goodput']:>6.0f} "
          f"{r['shed']:>6} {r['p50']:>6.1f} {r['p99']:>6.1f} {r['shed_p99']:>5.1f} | srv "
          f"{r['srv']:.2f} {r['srv_u_ms']:.2f}u+{r['srv_s_ms']:.2f}s ms | pg {r['pg']:.2f} "
          f"{r['pg_u_ms']:.2f}u+{r['pg_s_ms']:.2f}s ms | gen {r['gen']:.2f} st {r['steal']:.2f}"
          f" | cs/r {r['vcs']:.1f}v {r['ics']:.2f}i | lag {r['lag_ms']:.1f} ms | slot "
          f"{r['slot_ms']} ms | gc {r['gc']} | episodes {r['episodes']} | queued {r['queued']} early {r['early']} {r['reasons']}"
          + (f" {r['dbg']}" if r.get('dbg') else ""),
          flush=True)


async def run(args, servers, dsn, roots, postmaster):
    pools = []
    for name, port, proc in servers:
        pool = lg.Pool("127.0.0.1", port)
        await lg.wait_healthy(pool, proc)
        pools.append(pool)
    work = await lg.workload(dsn, roots, servers[0][1])
    for pool in pools:
        await lg.sequential(pool, work, 200)
    configs = [dict(p.split("=", 1) for p in c.split(",")) for c in args.config] or [{}]
    multipliers = [float(m) for m in str(args.multiplier).split(",")]
    nices = [int(n) for n in args.generator_nice.split(",")]
    base_nice = os.getpriority(os.PRIO_PROCESS, 0)
    cases = [(v, c, n) for v in range(len(servers)) for c in configs for n in nices]
    labels = [f"{servers[v][0]} {c or ''} gen+{n}".strip() for v, c, n in cases]
    rows = {k: {"peak": [], "over": [], "moderate": []} for k in range(len(cases))}
    print("cases: " + "; ".join(f"{k + 1}: {lab}" for k, lab in enumerate(labels)))
    print("rd cf phase  offer/s good/s   503s  p50ms  p99ms 503p99")
    for i in range(args.rounds):
        for k, (v, cfg, nice) in enumerate(cases):
            os.setpriority(os.PRIO_PROCESS, 0, base_nice + nice)
            _, port, proc = servers[v]
            pool = pools[v]
            if cfg:
                await lg.set_settings(port, cfg)
                await lg.sequential(pool, work, 5)
            r = await phase("peak", port, proc.pid, postmaster,
                            lg.closed_loop(pool, work, 16, 0.0, args.seconds), args.seconds,
                            args.profile, f"r{i}c{k}-peak")
            _print(i + 1, k + 1, r)
            rows[k]["peak"].append(r)
            peak_rate = r["goodput"]
            if args.moderate:
                m = await phase(f"{args.moderate:.0%}", port, proc.pid, postmaster,
                                lg.open_loop(pool, work, args.moderate * peak_rate,
                                             args.seconds, seed=100 + i),
                                args.seconds, args.profile, f"r{i}c{k}-moderate")
                _print(i + 1, k + 1, m)
                rows[k]["moderate"].append(m)
            for mult in multipliers:
                r = await phase(f"{mult:g}x", port, proc.pid, postmaster,
                                lg.open_loop(pool, work, mult * peak_rate, args.seconds,
                                             seed=i),
                                args.seconds, args.profile, f"r{i}c{k}-over{mult:g}")
                _print(i + 1, k + 1, r)
                r["peak_rate"] = peak_rate
                rows[k].setdefault(mult, []).append(r)
            rows[k]["over"].append(r)
    for pool in pools:
        pool.close()
    print("\nsums over rounds (steady: the overload's first second left out)")
    for k in rows:
        pk = rows[k]["peak"]
        ov = rows[k]["over"]
        peak = sum(r["goodput"] for r in pk) / len(pk)
        steady = []
        for r in ov:
            t0 = min(x.scheduled for x in r["results"])
            steady += [x for x in r["results"] if x.scheduled >= t0 + 1.0]
        st = lg.summary(steady, len(ov) * (args.seconds - 1.0))
        if rows[k]["moderate"]:
            md = lg.summary([x for r in rows[k]["moderate"] for x in r["results"]],
                            len(rows[k]["moderate"]) * args.seconds)
            print(f"   at {args.moderate:.0%} of the peak: 503s {md['shed']}, 200 p50 "
                  f"{md['ok_p50']:.1f} p99 {md['ok_p99']:.1f} ms; overload steady 200 p99 = "
                  f"{st['ok_p99'] / md['ok_p99']:.2f}x that p99")

        def avg(key, rs):
            return sum(r[key] for r in rs) / len(rs)
        print(f"case {k + 1} {labels[k]}: peak {peak:.0f}/s; overload steady "
              f"goodput {st['goodput']:.0f}/s = {st['goodput'] / peak:.0%}; 200 p50 "
              f"{st['ok_p50']:.1f} p99 {st['ok_p99']:.1f} ms; 503 p99 {st['shed_p99']:.2f} ms")
        for key in ("srv", "srv_u_ms", "srv_s_ms", "pg", "pg_u_ms", "pg_s_ms", "gen", "steal",
                    "vcs", "ics", "lag_ms"):
            a, b = avg(key, pk), avg(key, ov)
            print(f"   {key:<9} peak {a:7.3f}  overload {b:7.3f}  ratio {b / a if a else 0:5.2f}")
        if len(multipliers) > 1:
            print("   by load (whole phases): x peak, goodput share of the round's peak, "
                  "refusals/s, server cores, server ms/render, pg cores, generator cores")
            for mult in multipliers:
                rs = rows[k][mult]
                share = sum(r["goodput"] / r["peak_rate"] for r in rs) / len(rs)
                print(f"   {mult:>4g}x {share:6.0%} {avg('shed', rs) / args.seconds:7.0f} "
                      f"{avg('srv', rs):5.2f} {avg('srv_u_ms', rs) + avg('srv_s_ms', rs):5.2f} "
                      f"{avg('pg', rs):5.2f} {avg('gen', rs):5.2f}")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--multiplier", default="3",
                   help="x the peak; several (1.5,2,3,4): each in every round, in turn")
    p.add_argument("--config", action="append", default=[])
    p.add_argument("--generator-nice", default="0",
                   help="the load generator's niceness above the service's, per case (0,10)")
    p.add_argument("--moderate", type=float, default=0.0,
                   help="also Poisson at this share of the round's peak (e.g. 0.8)")
    p.add_argument("--profile", default="")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=ROOT",
                   help="a server per checkout, measured in turn in every round")
    p.add_argument("--pin", default="", help="SERVER:PG:GENERATOR cpu lists for taskset")
    p.add_argument("--server-setting", action="append", default=[])
    p.add_argument("--data-dir", default=str(ROOT / ".arbor" / "bench-pgdata"))
    args = p.parse_args(argv)
    server = EmbeddedPostgres(args.data_dir, FAST_UNSAFE_OPTIONS)
    dsn = server.start()
    servers = []
    try:
        report = asyncio.run(seeding.seed_dsn(dsn, "bench"))
        for spec in args.variant or [f"this={ROOT}"]:
            name, root = spec.split("=", 1)
            port = free_port()
            servers.append((name, port, lg.start_service(
                dsn, port, lg.cache_off_settings() + args.server_setting, root=root)))
        proc = servers[0][2]
        postmaster = lg.postmaster_pid(args.data_dir)
        if args.pin:
            srv, pg, gen = args.pin.split(":")
            time.sleep(3)
            subprocess.run(["taskset", "-a", "-p", "-c", srv, str(proc.pid)],
                           stdout=subprocess.DEVNULL, check=True)
            for d in os.listdir("/proc"):
                if d.isdigit():
                    try:
                        ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
                    except OSError:
                        continue
                    if int(d) == postmaster or ppid == postmaster:
                        subprocess.run(["taskset", "-a", "-p", "-c", pg, d],
                                       stdout=subprocess.DEVNULL)
            os.sched_setaffinity(0, {int(c) for c in gen.split(",")})
            print(f"pinned: server {srv}, postgres {pg} (its backends inherit it), "
                  f"generator {gen}")
        return asyncio.run(run(args, servers, dsn, report["roots"], postmaster))
    finally:
        for _, _, proc in servers:
            stop_process(proc)
        if server.started_here:
            server.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
