"""`make loadtest`: seed, start the service, run a short gated Locust run, stop everything.

    .venv/bin/python -m loadtest.run [--preset bench] [--users 20] [--run-time 30s]
        [--setting NAME=VALUE ...] [-- LOCUST OPTIONS ...]

1. `arbor seed --preset PRESET --export DIR/data.json` on its own embedded PostgreSQL
   (DIR/pgdata, default DIR .arbor/loadtest; the bench preset, ~1M posts, is seeded once and
   kept: reruns skip it);
2. `arbor serve` on a free port with those settings (`--setting` passes service settings, e.g.
   an absurdly low `concurrency_limit=1`), waits for /readyz;
3. Locust headless with loadtest/slo.toml, CSV and HTML reports in DIR (report.html,
   run_stats.csv, ...), the gate's verdict in DIR/slo.json;
4. stops the service (and with it its PostgreSQL), whatever happened.

The exit code is the gate's: 0 every SLO met, 1 one missed (the report names it), 2 the run
went wrong (seed, service, or the load test itself).
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RUN_ERROR = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, service: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def stop(service: subprocess.Popen) -> None:
    if service.poll() is None:
        service.send_signal(signal.SIGINT)   # aiohttp's graceful stop; PostgreSQL after it
        try:
            service.wait(30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="make loadtest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="bench", choices=("demo", "viral", "bench"))
    p.add_argument("--dir", default=str(ROOT / ".arbor" / "loadtest"),
                   help="PostgreSQL data, the data file and the reports")
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--spawn-rate", type=float, default=10)
    p.add_argument("--run-time", default="30s")
    p.add_argument("--processes", type=int, default=1, help="Locust worker processes")
    p.add_argument("--slo-file", default=str(ROOT / "loadtest" / "slo.toml"))
    p.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                   help="a service setting (repeatable)")
    p.add_argument("--database-url", default=None,
                   help="a PostgreSQL to use instead of the embedded one under --dir")
    return p.parse_args(argv), extra


def main(argv: list[str] | None = None) -> int:
    args, extra = parse(sys.argv[1:] if argv is None else argv)
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data.json"
    # Only what is given here: an ARBOR_* or DATABASE_URL of the shell must not point the
    # seeding at another database.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ARBOR_") and k != "DATABASE_URL"}
    common = [f"--setting=data_dir={out / 'pgdata'}"]
    if args.database_url:
        common.append(f"--setting=database_url={args.database_url}")
    arbor = str(BIN / "arbor")

    started = time.monotonic()
    seeded = subprocess.run([arbor, "seed", "--preset", args.preset, "--export", str(data),
                             *common], env=env, stdout=subprocess.DEVNULL)
    if seeded.returncode != 0:
        print("loadtest: seeding failed", file=sys.stderr)
        return RUN_ERROR
    print(f"loadtest: {args.preset} preset seeded and exported in "
          f"{time.monotonic() - started:.1f} s", flush=True)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = [*common, f"--setting=port={port}", "--setting=cursor_secret=loadtest",
                *(f"--setting={s}" for s in args.setting)]
    log_path = out / "service.log"
    with open(log_path, "wb") as log:
        service = subprocess.Popen([arbor, "serve", *settings], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        if not wait_ready(url, service, 60):
            print(f"loadtest: the service did not become ready; see {log_path}",
                  file=sys.stderr)
            return RUN_ERROR
        load = os.getloadavg()
        print(f"loadtest: service on {url}; load average {load[0]:.2f} {load[1]:.2f} "
              f"{load[2]:.2f}; {os.cpu_count()} CPUs", flush=True)
        locust = [str(BIN / "locust"), "-f", str(ROOT / "loadtest" / "locustfile.py"),
                  "--host", url, "--headless", "-u", str(args.users), "-r",
                  str(args.spawn_rate), "-t", args.run_time, "--arbor-data", str(data),
                  "--slo-file", args.slo_file, "--slo-report", str(out / "slo.json"),
                  "--html", str(out / "report.html"), "--csv", str(out / "run"),
                  "--only-summary", *(["--processes", str(args.processes)]
                                      if args.processes > 1 else []), *extra]
        code = subprocess.run(locust, env=env, cwd=ROOT).returncode
        print(f"loadtest: reports in {out} (report.html, run_stats.csv, slo.json); "
              f"exit {code}", flush=True)
        return code if code in (0, 1) else RUN_ERROR
    finally:
        stop(service)


if __name__ == "__main__":
    sys.exit(main())
