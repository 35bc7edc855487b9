"""`stair-es serve` latency: text queries through the HTTP API on the demo collection.

Prints one JSON object. Against a live engine (STAIR_ES_URL or --url)::

    python benchmarks/serve_latency.py --json

It indexes the demo collection first when the demo index is missing (`stair-es demo`, the compose
loader's command), starts `stair-es serve` on a free loopback port (or uses --serve-url), sends
--warmup then --queries text queries one at a time over one keep-alive connection, and reports
client wall time per request (p50/p99/mean) for each mode, plus the engine's own time for the same
requests (took_ms: the search call's round trip) and the time of /api/explain for the same texts (encoding only, no engine), so
the three parts (HTTP + JSON, encoder, engine) can be told apart. Queries are 2-5 consecutive
words of the collection's captions, seeded.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def percentiles(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values)
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 2),
        "p99_ms": round(float(np.percentile(arr, 99)), 2),
        "mean_ms": round(float(arr.mean()), 2),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stair(args: list[str], env: dict[str, str], **kwargs) -> subprocess.Popen | subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "stair_es_cli.main", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, **kwargs)


def ensure_demo_index(url: str, env: dict[str, str], images: int) -> None:
    from stair_es.demo import DEMO_INDEX
    from stair_es.engine import connect

    with connect(urls=url) as backend:
        if backend.index_exists(DEMO_INDEX) and backend.count(DEMO_INDEX) >= images:
            return
    done = stair(["demo", "--url", url, "--images", str(images)], env, timeout=1800)
    if done.returncode != 0:
        sys.exit(f"stair-es demo failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def make_queries(collection: Path, count: int, seed: int) -> list[str]:
    captions = sorted(p.read_text().strip() for p in (collection / "images").glob("*.txt"))
    if not captions:
        sys.exit(f"no captions under {collection}/images: run stair-es demo first")
    rng = random.Random(seed)
    queries = []
    for _ in range(count):
        words = rng.choice(captions).split()
        size = rng.randint(2, min(5, len(words)))
        start = rng.randint(0, len(words) - size)
        queries.append(" ".join(words[start : start + size]))
    return queries


def wait_healthy(conn: http.client.HTTPConnection, deadline: float) -> dict:
    while True:
        try:
            conn.request("GET", "/api/health")
            resp = conn.getresponse()
            body = json.loads(resp.read())
            if resp.status == 200 and body.get("ok"):
                return body
        except (OSError, http.client.HTTPException, ValueError):
            conn.close()
        if time.monotonic() > deadline:
            sys.exit("stair-es serve did not become healthy")
        time.sleep(0.3)


def timed_get(conn: http.client.HTTPConnection, path: str) -> tuple[float, dict]:
    start = time.perf_counter()
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    elapsed = (time.perf_counter() - start) * 1000
    if resp.status != 200:
        sys.exit(f"GET {path}: HTTP {resp.status} {body[:300]!r}")
    return elapsed, json.loads(body)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=os.environ.get("STAIR_ES_URL"), help="engine URL [STAIR_ES_URL]")
    parser.add_argument("--serve-url", default=None, help="a running stair-es serve (default: start one)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--k", type=int, default=20, help="hits per page, as the page asks")
    parser.add_argument("--modes", default="exact,two-phase,hybrid")
    parser.add_argument("--images", type=int, default=240, help="demo collection size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="JSON output (the only format; for symmetry)")
    args = parser.parse_args()
    if not args.url and not args.serve_url:
        sys.exit("give --url (or STAIR_ES_URL) for the engine, or --serve-url for a running server")

    from stair_es.demo import DEMO_INDEX, demo_root

    env = {**os.environ, "STAIR_ES_PROVIDER": os.environ.get("STAIR_ES_PROVIDER", "cpu")}
    server = None
    if args.serve_url:
        base = args.serve_url
    else:
        ensure_demo_index(args.url, env, args.images)
        port = free_port()
        log = tempfile.TemporaryFile("w+")
        cmd = [sys.executable, "-m", "stair_es_cli.main", "serve", "--url", args.url, "--port", str(port)]
        server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
    parsed = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    try:
        health = wait_healthy(conn, time.monotonic() + 120)
        queries = make_queries(demo_root() / "collection", args.warmup + args.queries, args.seed)
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        client: dict[str, list[float]] = {m: [] for m in modes}
        engine: dict[str, list[float]] = {m: [] for m in modes}
        encode: list[float] = []
        hits: dict[str, int] = {m: 0 for m in modes}
        for i, text in enumerate(queries):
            q = urllib.parse.quote(text)
            measured = i >= args.warmup
            for mode in modes:  # interleaved: background load hits every mode alike
                elapsed, body = timed_get(
                    conn, f"/api/search?q={q}&mode={mode}&k={args.k}&index={DEMO_INDEX}"
                )
                if measured:
                    client[mode].append(elapsed)
                    engine[mode].append(float(body["took_ms"]))
                    hits[mode] += len(body["hits"])
            elapsed, _ = timed_get(conn, f"/api/explain?q={q}&top=40")
            if measured:
                encode.append(elapsed)
        out = {
            "benchmark": "serve_latency",
            "queries": args.queries,
            "warmup": args.warmup,
            "k": args.k,
            "engine": health.get("engine"),
            "docs": health["indexes"][DEMO_INDEX]["docs"],
            "model": health.get("model"),
            "provider": (health.get("provider") or "").split(" (")[0],
            "cpus": os.cpu_count(),
            "modes": {
                m: {
                    **percentiles(client[m]),
                    "engine_round_trip": percentiles(engine[m]),
                    "mean_hits": round(hits[m] / args.queries, 2),
                }
                for m in modes
            },
            "explain_encode_only": percentiles(encode),
            "notes": "client wall time per HTTP request, one at a time over one keep-alive connection",
        }
        print(json.dumps(out, indent=2))
    finally:
        conn.close()
        if server is not None:
            server.terminate()
            server.wait(timeout=15)


if __name__ == "__main__":
    main()
