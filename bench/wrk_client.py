"""wrk as the benches' closed-loop load generator, when it is installed (`apt-get install wrk`).

A Python asyncio client spends about as much CPU per request as the server it measures (more
when it decodes a compressed body: aiohttp's client asks for br and inflates each 141-KB
answer), so on this 2-CPU machine it, not the server, set the pace of the cached benches: the
server sat at 0.6 core. wrk (C, one thread here) spends a few microseconds per request, so the
server under test is the bottleneck, as it should be. Its answers are not decoded.

    drive(base, paths, seconds, concurrency, headers) -> (requests/s, ok, not ok)

`paths` (and `per_request` header sets) are taken in turn (a Lua script); "ok" is a 2xx or
3xx answer.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua(value: str) -> str:
    return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')


def drive(base: str, paths: list[str], seconds: float, concurrency: int,
          headers: dict[str, str] | None = None, threads: int = 1,
          per_request: list[dict[str, str]] | None = None) -> tuple[float, int, int]:
    """`per_request`: header sets taken in turn, one per request (one client after the
    other), besides `headers`."""
    # wrk.format() with a header table sends those instead of the -H ones: merged here
    sets = [{**(headers or {}), **h} for h in (per_request or [{}])]
    lua = ("local paths = {%s}\nlocal sets = {%s}\nlocal i = 0\n"
           "request = function()\n  i = i + 1\n"
           "  return wrk.format(\"GET\", paths[(i %% #paths) + 1], sets[(i %% #sets) + 1])\n"
           "end\n") % (", ".join(_lua(p) for p in paths), ", ".join(
               "{%s}" % ", ".join(f"[{_lua(k)}] = {_lua(v)}" for k, v in h.items())
               for h in sets))
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(lua)
        script.flush()
        cmd = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(seconds))}s",
               "--timeout", "10s", "-s", script.name]
        for name, value in (headers or {}).items():
            cmd += ["-H", f"{name}: {value}"]
        out = subprocess.run(cmd + [base], capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    not_ok = (int(bad.group(1)) if bad else 0) + (
        sum(int(g) for g in errors.groups()) if errors else 0)
    return rate * (total - not_ok) / max(total, 1), total - not_ok, not_ok
