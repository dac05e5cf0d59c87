"""The admission controller (service/resilience/admission.py, the real code) in front of a simulated
service: a discrete-event model, no network, no noise from the machine.

    python bench/admission_sim.py [--target-ms 20] [--interval-ms 400] [--concurrency 4]
                                  [--seconds 60] [--lifo]

The model: each request needs `cpu` ms of the service's one CPU (shared equally by the
requests in flight: processor sharing), split around one database round trip of `db` ms that
does not use it; every time is drawn with a 30% spread. With 0.9 + 0.9 ms of CPU and 1 ms of
database the peak is ~555 requests/s at 3 or more slots (~2.8 ms unloaded), close to
bench/overload.py on a quiet 2-CPU machine. Arrivals are Poisson; 20% are continuations (LOW).

Prints, for the settings given: shed requests and 200 p99 at 50%, 80% and 90% of the peak
(--seconds each) and at 3x (8 s after 1 s at 80%): goodput, 200 and 503 p99, steady (from
1 s into the overload) and whole (with its onset). --lifo serves each lane newest first while
overloaded (adaptive LIFO), for comparison: it lowers the admitted p99 and turns the oldest
waiters into timeouts (slow 503s).
"""
from __future__ import annotations

import argparse
import heapq
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.resilience import admission as A  # noqa: E402

PEAK = 555.0


class _Req:
    __slots__ = ("arrived", "priority", "phase", "left", "started")


def simulate(params: A.Params, arrivals: list, *, cpu=(0.0009, 0.0009), db=0.001,
             spread=0.3, seed=1, lifo=False) -> tuple[list, A.Admission]:
    """Results (arrived, status, latency, reason) of `arrivals` [(time, priority)]."""
    rng = random.Random(seed)
    adm = A.Admission(params)
    if lifo:
        _make_lifo(adm)
    events: list = []
    seq = 0

    def push(t, kind, obj=None):
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, obj))

    def draw(x):
        return x * max(0.1, rng.gauss(1, spread))

    for t, priority in arrivals:
        push(t, "arrive", priority)
    running: list[_Req] = []       # in a CPU phase
    results: list = []
    now = 0.0
    timer = [None]

    def advance(to):
        nonlocal now
        if running:
            d = (to - now) / len(running)
            for r in running:
                r.left -= d
        now = to

    def start(r):
        r.started, r.phase, r.left = now, 0, draw(cpu[0])
        running.append(r)

    def settle():
        for w in adm.take_settled():
            if w.state == A.GRANTED:
                start(w.token)
            else:
                results.append((w.token.arrived, 503, now - w.token.arrived, w.reason))
        due = adm.next_deadline()
        if due is not None and (timer[0] is None or due < timer[0]):
            timer[0] = due
            push(due, "tick")

    while events or running:
        cpu_done = now + min(r.left for r in running) * len(running) if running else None
        if events and (cpu_done is None or events[0][0] <= cpu_done):
            t, _, kind, obj = heapq.heappop(events)
            advance(t)
            if kind == "arrive":
                r = _Req()
                r.arrived, r.priority = now, obj
                decision, detail = adm.try_acquire(obj, "client", now)
                if decision == A.ADMIT:
                    start(r)
                elif decision == A.QUEUED:
                    detail.token = r
                else:
                    results.append((now, 503, 0.0002, detail))
            elif kind == "db":
                obj.phase, obj.left = 2, draw(cpu[1])
                running.append(obj)
            else:
                if timer[0] is not None and now >= timer[0]:
                    timer[0] = None
                adm.tick(now)
            settle()
        else:
            advance(cpu_done)
            r = min(running, key=lambda x: x.left)
            running.remove(r)
            if r.phase == 0:
                r.phase = 1
                push(now + draw(db), "db", r)
            else:
                results.append((r.arrived, 200, now - r.arrived, None))
                adm.release("client", now - r.started, now)
                settle()
    return results, adm


def _make_lifo(adm: A.Admission) -> None:
    fifo = adm._next_waiter

    def next_waiter(now):
        w = fifo(now)
        if w is None or not adm.overloaded:
            return w
        return next((x for x in reversed(w.lane.waiters) if x.state == A.WAITING), w)

    adm._next_waiter = next_waiter


def poisson(rate: float, t0: float, t1: float, rng: random.Random) -> list:
    t, out = t0, []
    while True:
        t += rng.expovariate(rate)
        if t >= t1:
            return out
        out.append((t, A.Priority.LOW if rng.random() < 0.2 else A.Priority.HIGH))


def _p(values: list, q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q / 100 * len(values)))] * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target-ms", type=float, default=20)
    parser.add_argument("--interval-ms", type=float, default=400)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--lifo", action="store_true")
    args = parser.parse_args(argv)
    params = A.Params(concurrency=args.concurrency, target_s=args.target_ms / 1e3,
                      interval_s=args.interval_ms / 1e3)
    print(f"concurrency {args.concurrency}, target {args.target_ms:g} ms, interval "
          f"{args.interval_ms:g} ms{', LIFO while overloaded' if args.lifo else ''}")
    for load in (0.5, 0.8, 0.9):
        res, adm = simulate(params, poisson(load * PEAK, 0, args.seconds,
                                            random.Random(int(load * 100))), lifo=args.lifo)
        ok = [lat for _, status, lat, _ in res if status == 200]
        print(f"  {load:.0%} of the peak, {args.seconds:g} s: {len(res) - len(ok)} shed of "
              f"{len(res)}, 200 p99 {_p(ok, 99):.1f} ms, overload episodes "
              f"{adm.counters.overload_episodes}")
    rng = random.Random(9)
    res, adm = simulate(params, poisson(0.8 * PEAK, 0, 1, rng) + poisson(3 * PEAK, 1, 9, rng),
                        lifo=args.lifo)
    for label, t0 in (("steady", 2.0), ("whole", 1.0)):
        part = [r for r in res if t0 <= r[0] < 9]
        ok = [r[2] for r in part if r[1] == 200]
        shed = [r[2] for r in part if r[1] == 503]
        done = sum(1 for a, status, lat, _ in res if status == 200 and t0 <= a + lat < 9)
        print(f"  3x, {label}: goodput {done / (9 - t0) / PEAK:.0%} of the peak, 200 p99 "
              f"{_p(ok, 99):.1f} ms, 503 p99 {_p(shed, 99):.2f} ms")
    print(f"  3x shed by reason: {adm.snapshot()['shed_by_reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
