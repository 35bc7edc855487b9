"""Ray overhead and scaling: ``stair-es index images`` on one folder, single-process and ``--ray``
with 1..N encoder actors, into a real engine, side by side in one run.

Each configuration is the real command in a fresh process (so Ray's connect, actor start-up and
model loading are in its wall time), indexing into a new index. The cluster is a local one (a head
and a worker node on loopback, ports pinned from ``--ray-port``) unless ``--ray-address`` names one.

    STAIR_ES_URL=http://127.0.0.1:9250 nice -n 5 python benchmarks/ray_ingest.py \\
        --model DIR --jpegs 160 --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--model", default=None, help="exported model (default: a tiny random one, --quick only)")
    p.add_argument("--precision", default="auto")
    p.add_argument("--jpegs", type=int, default=160)
    p.add_argument("--jpeg-size", default="1600x1200")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--actors", default="1,2", help="encoder actor counts to run with --ray")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="single-process threads")
    p.add_argument("--ray-address", default=None, help="an existing cluster (default: start a local one)")
    p.add_argument("--ray-port", type=int, default=int(os.environ.get("STAIR_ES_BENCH_RAY_PORT", "6400")))
    p.add_argument("--cpus-per-node", type=int, default=2)
    p.add_argument("--workdir", default=None)
    p.add_argument("--quick", action="store_true", help="tiny model and folder: checks the script only")
    args = p.parse_args(argv)
    if args.quick:
        args.jpegs, args.jpeg_size, args.batch_size = 8, "320x240", 4
    return args


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run_index(args: argparse.Namespace, model: str, folder: Path, index: str, *extra: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "stair_es_cli.main", "index", "images", str(folder), "--model", model,
           "--index", index, "--recreate", "--json", "--no-progress", "--precision", args.precision,
           "--batch-size", str(args.batch_size), *extra]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    load = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 10):
        raise SystemExit(f"{' '.join(cmd[3:])} failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    return {
        "wall_seconds": round(wall, 2),
        "run_seconds": summary["seconds"],
        "indexed": summary["indexed"],
        "failed": summary["failed"],
        "images_per_s": round(summary["indexed"] / wall, 2),
        "provider": summary["provider"],
        "ray": summary.get("ray"),
        "loadavg_1min_before": round(load, 2),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    sys.path.insert(0, str(HERE))
    import encode_throughput as bench

    from stair_es.engine import ConnectionConfig, connect
    from stair_es.ingest.ray_local import LocalRayCluster

    url = os.environ.get("STAIR_ES_URL")
    if not url:
        raise SystemExit("set STAIR_ES_URL to a running engine (e.g. stair-es engine up --port 9250)")
    tmp = tempfile.TemporaryDirectory(prefix="stair-ray-bench-")
    workdir = Path(args.workdir or tmp.name)
    folder = workdir / f"jpegs-{args.jpegs}-{args.jpeg_size}"
    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.jpg"))) < args.jpegs:
        log(f"writing {args.jpegs} JPEG files ({args.jpeg_size}) ...")
        w, h = (int(v) for v in args.jpeg_size.lower().split("x"))
        bench.make_jpegs(folder, args.jpegs, (w, h))
    model = args.model
    if model is None:
        if not args.quick:
            raise SystemExit("--model DIR is needed (a tiny random model is used with --quick only)")
        from stair_es.export import export_model
        from stair_es.model.testing import save_tiny_model

        model = str(
            export_model(save_tiny_model(workdir / "tiny"), workdir / "tiny-onnx", overwrite=True).root
        )
    result: dict[str, Any] = {
        "config": {
            "files": args.jpegs,
            "jpeg_size": args.jpeg_size,
            "batch_size": args.batch_size,
            "model": model,
            "precision": args.precision,
            "cpu_count": os.cpu_count(),
        },  # fmt: skip
    }
    tag = f"stair-ray-bench-{os.getpid()}"
    cluster = None
    address = args.ray_address
    try:
        if address is None:
            log("starting a local Ray cluster (head + 1 worker node) ...")
            cluster = LocalRayCluster(base_port=args.ray_port, workers=1, cpus_per_node=args.cpus_per_node)
            address = cluster.start().address
        log("single process ...")
        result["single_process"] = run_index(
            args, model, folder, f"{tag}-single", "--threads", str(args.threads)
        )
        result["ray"] = {}
        for actors in (int(a) for a in args.actors.split(",")):
            threads = max(1, args.threads // actors)
            log(f"--ray with {actors} encoder actor(s) x {threads} thread(s) ...")
            result["ray"][str(actors)] = run_index(
                args, model, folder, f"{tag}-ray{actors}", f"--ray={address}",
                "--ray-encoders", str(actors), "--threads", str(threads),
            )  # fmt: skip
    finally:
        if cluster is not None:
            cluster.stop()
        with connect(ConnectionConfig.from_env(env={}, urls=url)) as backend:
            for suffix in ["single", *(f"ray{a}" for a in args.actors.split(","))]:
                if backend.index_exists(f"{tag}-{suffix}"):
                    backend.delete_index(f"{tag}-{suffix}")
        tmp.cleanup()
    single = result["single_process"]["wall_seconds"]
    result["ray_over_single_wall"] = {
        a: round(r["wall_seconds"] / single, 3) for a, r in result["ray"].items()
    }
    first = min(result["ray"], key=int)
    result["ray_scaling_vs_fewest_actors"] = {
        a: round(result["ray"][first]["wall_seconds"] / r["wall_seconds"], 3)
        for a, r in result["ray"].items()
    }
    result["loadavg_1min_end"] = round(os.getloadavg()[0], 2)
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
