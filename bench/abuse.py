"""Issue 11's abuse targets, side by side in one run: the enumeration oracle closed (hidden vs
missing 404 medians within 5%, interleaved, 200 each, anonymous and signed in, per hidden
reason), an id prober throttled within its 404 budget (after how many probes, how many ids
per hour at most), and what rate limiting costs a cached conversation (limits off vs on,
alternating rounds; with --redis, also the shared store).

    python bench/abuse.py [--rounds 200] [--seconds 5] [--throughput-rounds 5] [--redis]

The parts are bench/enumeration.py and bench/cached_throughput.py --rate-limits.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cached_throughput  # noqa: E402
import enumeration  # noqa: E402
from harness import DATA_DIR, verdict  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--throughput-rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--redis", action="store_true")
    args = parser.parse_args(argv)
    print("== enumeration: hidden vs missing 404s, and an id prober ==")
    checks = enumeration.checks(args.rounds)
    print("\n== rate limiting's cost on a cached conversation ==")
    checks += cached_throughput.rate_limit_checks(argparse.Namespace(
        seconds=args.seconds, rounds=args.throughput_rounds, concurrency=args.concurrency,
        data_dir=DATA_DIR, redis=args.redis))
    print()
    return verdict(checks)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
