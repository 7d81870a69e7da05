"""API throughput: a 100-record list with nested relations, guanxi vs. strawberry from memory.

    .venv/bin/python bench/api.py [--records 100] [--requests 300] [--warmup 30]
                                  [--database-url postgres://...]

Sets up a throw-away GUANXI_HOME whose admin entities (entities/expo.yaml) mirror the
expo test plugin's Fair and ExpoBooking, fills it through the record API, adds an admin
with ``guanxi user add`` and takes a token from ``guanxi token``. Then it starts two HTTP
servers on 127.0.0.1, each a subprocess on a free port:

- ``guanxi serve``: the real API, reading the database;
- the ceiling: a small strawberry schema of the same types answering the same query from
  plain Python objects, with the same parser/validation caches and limiters, served by
  uvicorn the same way (access log on).

Both get the same query, sequentially over one keep-alive connection (httpx): warm-up
requests first, then the measured ones. The answers must be identical. It prints
requests/s, p50 and p99 of each and the ratio guanxi / memory, then stops both servers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import strawberry
from strawberry.asgi import GraphQL
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)

QUERY = """
query Bookings($first: Int!) {
  expoBookings(first: $first) {
    nodes {
      title
      fair { name expoBookings(first: 5) { totalCount } }
      owner { username }
    }
  }
}
"""
FAIRS = 10
OWNERS = 5
ENTITIES_YAML = """\
# The expo test plugin's entities (tests/plugins/expo.py), as an admin writes them.
entities:
  - name: Fair
    label: Trade fair
    labels: {zh: 糖酒会}
    natural_key: name
    fields:
      name: {type: string, required: true, unique: true, max_length: 120}
      season: {type: enum, choices: [spring, autumn]}
      city: {type: string, max_length: 64}
  - name: ExpoBooking
    label: Expo booking
    labels: {zh: 展位预订}
    owned: true
    fields:
      title: {type: string, required: true, max_length: 200}
      booth_m2: {type: decimal, min: 0}
      fair: {type: ref, to: Fair, required: true}
      cancel_reason: {type: string, max_length: 200}
      fee: {type: money}
      contact_email: {type: email}
      contact_phone: {type: phone}
      starts_on: {type: date}
      confirmed: {type: bool, default: false}
      notes: {type: text}
      extra: {type: json}
      rank: {type: int, min: 1, max: 5}
      ratio: {type: float}
      hall: {type: string, indexed: true, max_length: 20}
      arrives_at: {type: datetime}
"""


# -- the data, the same for both servers ---------------------------------------------------
def dataset(records: int) -> tuple[list[str], list[str], list[tuple[str, int, int]]]:
    """(fair names, owner usernames, bookings as (title, fair index, owner index))."""
    fairs = [f"Fair {i:02d}" for i in range(FAIRS)]
    owners = [f"manager{i}" for i in range(OWNERS)]
    bookings = [(f"Booth {i:03d}", i % FAIRS, i % OWNERS) for i in range(records)]
    return fairs, owners, bookings


def fill_database(env: dict[str, str], records: int) -> None:
    """Create the fairs, owners and bookings through the record API."""
    from guanxi.engine import Config, Engine

    fairs, owners, bookings = dataset(records)
    engine = Engine(Config.from_env(env))
    engine.open()
    try:
        fair_ids = [engine.records.create("Fair", {"name": name}).id for name in fairs]
        owner_ids = [engine.auth.create_user(name).id for name in owners]
        engine.records.create_many(
            "ExpoBooking",
            [
                {"title": title, "fair": fair_ids[f], "owner": owner_ids[o]}
                for title, f, o in bookings
            ],
        )
    finally:
        engine.close()


# -- the ceiling: strawberry from memory ---------------------------------------------------
@strawberry.type(name="User")
class MemoryUser:
    username: str


@strawberry.type(name="ExpoBookingConnection")
class MemoryConnection:
    total_count: int
    nodes: list[MemoryBooking]


@strawberry.type(name="Fair")
class MemoryFair:
    name: str
    bookings: strawberry.Private[list[MemoryBooking]]

    @strawberry.field
    def expo_bookings(self, first: int | None = None) -> MemoryConnection:
        return MemoryConnection(total_count=len(self.bookings), nodes=self.bookings[: first or 50])


@strawberry.type(name="ExpoBooking")
class MemoryBooking:
    title: str
    fair: MemoryFair
    owner: MemoryUser


def memory_app(records: int) -> Any:
    """Strawberry's ASGI app answering QUERY from plain objects, with guanxi's caches."""
    fairs, owners, rows = dataset(records)
    fair_objects = [MemoryFair(name=name, bookings=[]) for name in fairs]
    users = [MemoryUser(username=name) for name in owners]
    bookings: list[MemoryBooking] = []
    for title, f, o in rows:
        booking = MemoryBooking(title=title, fair=fair_objects[f], owner=users[o])
        fair_objects[f].bookings.append(booking)
        bookings.append(booking)

    @strawberry.type
    class Query:
        @strawberry.field
        def expo_bookings(self, first: int | None = None) -> MemoryConnection:
            return MemoryConnection(total_count=len(bookings), nodes=bookings[: first or 50])

    schema = strawberry.Schema(
        query=Query,
        extensions=[
            QueryDepthLimiter(max_depth=12),
            MaxAliasesLimiter(max_alias_count=30),
            MaxTokensLimiter(max_token_count=5000),
            ParserCache(maxsize=256),
            ValidationCache(maxsize=256),
        ],
    )
    return GraphQL(schema, graphql_ide=None)


def serve_memory(port: int, records: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def healthz(request: Any) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/graphql", memory_app(records), methods=["GET", "POST"]),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info")


# -- running servers -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    url: str
    log: Path

    def wait_ready(self, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited early:\n{self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + path, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"{self.name} was not ready after {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(name: str, args: list[str], env: dict[str, str], port: int, log: Path) -> Server:
    handle = log.open("w")
    process = subprocess.Popen(
        args, env=env, cwd=env.get("GUANXI_HOME"), stdout=handle, stderr=subprocess.STDOUT
    )
    return Server(name, process, f"http://127.0.0.1:{port}", log)


def guanxi_cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [guanxi_command(), *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"guanxi {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def guanxi_command() -> str:
    here = Path(sys.executable).with_name("guanxi")
    return str(here) if here.exists() else (shutil.which("guanxi") or "guanxi")


# -- measuring -------------------------------------------------------------------------------
@dataclass
class Figures:
    name: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float


def measure(
    name: str, url: str, headers: dict[str, str], records: int, warmup: int, requests: int
) -> tuple[Figures, Any]:
    body = {"query": QUERY, "variables": {"first": records}}
    timings: list[float] = []
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        answer = None
        for i in range(warmup + requests):
            started = time.perf_counter()
            response = client.post("/graphql", json=body)
            elapsed = time.perf_counter() - started
            answer = response.json()
            if response.status_code != 200 or answer.get("errors"):
                raise SystemExit(f"{name} answered {response.status_code}: {response.text[:500]}")
            if i >= warmup:
                timings.append(elapsed)
    cuts = statistics.quantiles(timings, n=100, method="inclusive")
    figures = Figures(name, len(timings) / sum(timings), cuts[49] * 1000, cuts[98] * 1000)
    return figures, answer


def table(rows: list[Figures]) -> str:
    guanxi, memory = rows
    lines = [f"{'':34} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9}"]
    for row in rows:
        lines.append(f"{row.name:34} {row.requests_per_s:9.1f} {row.p50_ms:9.2f} {row.p99_ms:9.2f}")
    lines.append(
        f"{'ratio guanxi / memory':34} {guanxi.requests_per_s / memory.requests_per_s:9.3f} "
        f"{guanxi.p50_ms / memory.p50_ms:9.2f} {guanxi.p99_ms / memory.p99_ms:9.2f}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100, help="bookings listed per request")
    parser.add_argument("--requests", type=int, default=300, help="measured requests per server")
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured requests first")
    parser.add_argument("--database-url", help="GUANXI_DATABASE_URL (default: SQLite in home)")
    parser.add_argument("--serve-memory", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_memory:  # the ceiling server's subprocess
        serve_memory(args.serve_memory, args.records)
        return
    if not 1 <= args.records <= 200:
        parser.error("--records must be between 1 and 200 (the page-size cap)")

    home = Path(tempfile.mkdtemp(prefix="guanxi-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUANXI_")}
    env["GUANXI_HOME"] = str(home)
    if args.database_url:
        env["GUANXI_DATABASE_URL"] = args.database_url
    servers: list[Server] = []
    try:
        (home / "entities").mkdir()
        (home / "entities" / "expo.yaml").write_text(ENTITIES_YAML, encoding="utf-8")
        guanxi_cli(env, "init")
        guanxi_cli(env, "user", "add", "bench", "--role", "admin")
        token = guanxi_cli(env, "token", "bench").strip().splitlines()[-1]
        fill_database(env, args.records)

        port = free_port()
        guanxi = start(
            "guanxi serve",
            [guanxi_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env,
            port,
            home / "serve.log",
        )
        servers.append(guanxi)
        port = free_port()
        memory = start(
            "strawberry from memory",
            [sys.executable, __file__, "--serve-memory", str(port), "--records", str(args.records)],
            env,
            port,
            home / "memory.log",
        )
        servers.append(memory)
        guanxi.wait_ready("/readyz")
        memory.wait_ready("/healthz")

        auth = {"Authorization": f"Bearer {token}"}
        database = "PostgreSQL" if args.database_url else "SQLite"
        ours, our_answer = measure(
            f"guanxi serve ({database})",
            guanxi.url,
            auth,
            args.records,
            args.warmup,
            args.requests,
        )
        ceiling, memory_answer = measure(
            "strawberry from memory", memory.url, auth, args.records, args.warmup, args.requests
        )
        if our_answer != memory_answer:
            raise SystemExit("the two servers gave different answers to the same query")
        print(
            textwrap.dedent(f"""\
            {args.records} ExpoBookings, each with its fair (and the fair's bookings count)
            and owner; {args.warmup} warm-up + {args.requests} measured requests per server,
            one at a time over one keep-alive connection on 127.0.0.1
            """)
        )
        print(table([ours, ceiling]))
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
