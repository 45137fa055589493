"""RFC 7662 introspection throughput with auditing on and off, in one run.

Each mode starts the real service (``create_app``) under uvicorn in its own process on
a loopback port, with its own SQLite business database and audit store; the load
generator (this process) mints tokens through ``POST /tokens`` and then drives
``POST /introspect`` with ``--concurrency`` keep-alive connections for ``--seconds``.

Modes:
- ``off``: the token service's audit emitter is replaced by a no-op (the trail still
  starts, but introspections write nothing);
- ``on``: every introspection is its own durably committed audit event (the default);
- ``on-summary``: successful introspections are counted into per-minute summaries
  (``KROONIKA_TOKEN_AUDIT_SUMMARY_WINDOW_S=60``); failures would still be individual.

Load comes from ``wrk`` when it is installed (Debian package ``wrk``), else from an
httpx client in this process, which saturates its core before the service does.

Prints requests/s for each and the ratio on/off (target >= 0.8).

    .venv/bin/python benchmarks/introspection.py [--seconds 8] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _NullTrail:
    async def emit(self, event: Any) -> None:
        return None

    async def emit_many(self, batch: Any) -> list[Any]:
        return []


def serve(mode: str, port: int, var_dir: str) -> None:
    """Child process: the service with auditing ``on``/``off``/``on-summary``."""
    import uvicorn

    from kroonika.settings import Settings
    from kroonika.web import create_app

    settings = Settings(
        var_dir=Path(var_dir),
        ratelimit_enabled=False,
        cookie_secure=False,
        public_url=f"http://127.0.0.1:{port}",
        token_audit_summary_window_s=60 if mode == "on-summary" else 0,
        audit_synchronous="FULL",
    )
    app = create_app(settings)
    if mode == "off":
        app.state.tokens.service.trail = _NullTrail()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def register_client(var_dir: str) -> tuple[str, str]:
    from kroonika.db import make_engine
    from kroonika.db.migrate import upgrade
    from kroonika.settings import Settings
    from kroonika.tokens import ClientRegistry, SystemClock

    settings = Settings(var_dir=Path(var_dir))
    engine = make_engine(settings.resolved_database_url())
    upgrade(engine)
    new = ClientRegistry(engine, clock=SystemClock()).register(
        "bench", allowed_audiences=["bench-api"], max_ttl_s=3600
    )
    engine.dispose()
    return new.client.client_id, new.secret


WRK_SCRIPT = """
tokens = {%s}
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", "/introspect",
    {["Authorization"] = "%s", ["Content-Type"] = "application/x-www-form-urlencoded"},
    "token=" .. tokens[(counter %% #tokens) + 1])
end
"""


def drive_wrk(base: str, auth: str, tokens: list[str], seconds: float, concurrency: int) -> float:
    """Load from ``wrk`` (C, its own process): the Python load generator saturates one
    core before a service does, which hides the cost being measured."""
    script = WRK_SCRIPT % (", ".join(f'"{t}"' for t in tokens), auth)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
    try:
        cmd = ["wrk", "-t1", f"-c{concurrency}", "-s", fh.name, base + "/introspect"]
        subprocess.run([*cmd[:1], "-d1s", *cmd[1:]], check=True, capture_output=True)  # warm-up
        out = subprocess.run(
            [*cmd[:1], f"-d{seconds:.0f}s", *cmd[1:]], check=True, capture_output=True, text=True
        ).stdout
    finally:
        os.unlink(fh.name)
    if "Non-2xx" in out:
        raise RuntimeError("some introspections failed:\n" + out)
    return float(out.split("Requests/sec:")[1].split()[0])


async def mint(base: str, auth: str) -> list[str]:
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        tokens = []
        for i in range(64):
            r = await client.post(
                "/tokens", json={"subject": f"user-{i}"}, headers={"authorization": auth}
            )
            r.raise_for_status()
            tokens.append(r.json()["access_token"])
        return tokens


async def drive(base: str, auth: str, tokens: list[str], seconds: float, concurrency: int) -> float:
    import httpx

    headers = {"authorization": auth}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        done = 0
        errors = 0
        stop_at = 0.0

        async def worker(k: int) -> None:
            nonlocal done, errors
            i = k
            while time.perf_counter() < stop_at:
                r = await client.post(
                    "/introspect", data={"token": tokens[i % len(tokens)]}, headers=headers
                )
                if r.status_code != 200 or r.json().get("active") is not True:
                    errors += 1
                done += 1
                i += concurrency

        stop_at = time.perf_counter() + 1.0  # warm-up (connections, auth cache)
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        done = 0
        start = time.perf_counter()
        stop_at = start + seconds
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - start
        if errors:
            raise RuntimeError(f"{errors} introspections failed")
        return done / elapsed


def run_mode(mode: str, seconds: float, concurrency: int) -> float:
    with tempfile.TemporaryDirectory(prefix=f"kroonika-bench-{mode}-") as var_dir:
        cid, secret = register_client(var_dir)
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", mode, "--port", str(port), "--var", var_dir],
            env={**os.environ, "KROONIKA_ENV": "development"},
        )
        try:
            import httpx

            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"service ({mode}) did not start")
                time.sleep(0.1)
            auth = "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()
            base = f"http://127.0.0.1:{port}"
            tokens = asyncio.run(mint(base, auth))
            if shutil.which("wrk"):
                return drive_wrk(base, auth, tokens, seconds, concurrency)
            return asyncio.run(drive(base, auth, tokens, seconds, concurrency))
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--serve", choices=["on", "off", "on-summary"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--var")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.var)
        return
    results = {}
    for mode in ("off", "on", "on-summary"):
        results[mode] = run_mode(mode, args.seconds, args.concurrency)
        print(f"introspection, auditing {mode:<10}: {results[mode]:8.1f} req/s", flush=True)
    ratio = results["on"] / results["off"]
    ratio_s = results["on-summary"] / results["off"]
    verdict = "met" if ratio >= 0.8 else "NOT met"
    print(f"ratio on/off:          {ratio:.3f}  (target >= 0.8: {verdict})")
    print(f"ratio on-summary/off:  {ratio_s:.3f}")
    driver = (
        "wrk"
        if shutil.which("wrk")
        else "httpx (install wrk for a load generator that is not the bottleneck)"
    )
    print(
        f"(concurrency {args.concurrency}, {args.seconds:.0f}s per mode, loopback, SQLite, "
        f"load from {driver})"
    )


if __name__ == "__main__":
    main()
