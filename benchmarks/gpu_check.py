"""GPU check: a ViT-B/16 STAIR image encoder in fp16 on onnxruntime's CUDA provider, in under 5 minutes.

Prints one JSON object: what the machine has (GPU, onnxruntime, providers, why CUDA would not
load), the model-only rate (images/s at the best batch size found by auto-tuning; with inputs
already on the device, and with the copy from page-locked host memory included) and the
end-to-end rate over a folder of camera-sized JPEG files (decoded on the CPU cores, batches
assembled in page-locked buffers, inference overlapped with decoding), with where the time went.

    python benchmarks/gpu_check.py                    # random-weight ViT-B/16 STAIR, exported here
    python benchmarks/gpu_check.py --model DIR        # an existing export with fp16 graphs
    python benchmarks/gpu_check.py --provider cpu --quick   # the same code paths on a tiny model

Needs onnxruntime-gpu with CUDA 13 and cuDNN 9 libraries (``pip install "stair-es[all,gpu]"``:
torch's CUDA 13 wheels bring most; the ``gpu`` extra adds the rest); exporting needs torch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="exported model directory (default: export ViT-B/16 here)")
    p.add_argument("--provider", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--precision", choices=("fp16", "fp32", "int8"), default="fp16")
    p.add_argument("--jpegs", type=int, default=2048, help="JPEG files for the end-to-end run")
    p.add_argument("--jpeg-size", default="4032x3024", help="WxH of the generated files (a 12 MP phone)")
    p.add_argument("--batch-sizes", default="64,128,256,512,1024", help="candidates for auto-tuning")
    p.add_argument("--seconds", type=float, default=10.0, help="steady-state timing per model-only rate")
    p.add_argument("--decode-workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--budget", type=float, default=280.0, help="stop adding work after this many seconds")
    p.add_argument("--workdir", default=None, help="keep the export and JPEGs here (reused when present)")
    p.add_argument("--quick", action="store_true", help="tiny model and files: checks the script only")
    args = p.parse_args(argv)
    if args.quick:
        args.jpegs, args.jpeg_size, args.batch_sizes, args.seconds = 16, "640x480", "2,4,8", 0.5
    return args


def machine(provider: str) -> dict[str, Any]:
    import onnxruntime as ort

    from stair_es.runtime.sessions import cuda_unavailable_reason

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "cuda_unavailable_reason": cuda_unavailable_reason(ort),
    }
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        done = subprocess.run(query, capture_output=True, text=True, timeout=30)
        info["gpus"] = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    return info


def export_vit_b16(workdir: Path, quick: bool, precision: str) -> Path:
    """Random-weight ViT-B/16 STAIR (30,522-token head), image tower only, exported with fp16."""
    sys.path.insert(0, str(HERE))
    import encode_throughput as bench

    from stair_es.export import Tolerance, export_module

    out = workdir / ("onnx-quick" if quick else "onnx-vitb16")
    if (out / "manifest.json").is_file():
        return out
    args = bench.parse_args(["--quick"] if quick else [])
    model, sources = bench.build_model(args, workdir)
    lax = {"fp16": Tolerance(None, 0.0), "int8": Tolerance(None, 0.0)}  # random weights: near-ties
    export_module(
        model,
        sources,
        out,
        fp16=precision == "fp16",
        int8=precision == "int8",
        overwrite=True,
        tolerances=lax,
        towers=("image",),
    )
    return out


def _one_jpeg(job: tuple[str, int, int, int]) -> None:
    from PIL import Image, ImageDraw

    path, width, height, seed = job
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
    img = Image.fromarray(small, "RGB").resize((width, height), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(img)
    for _ in range(8):
        x0, y0 = int(rng.integers(0, width - 400)), int(rng.integers(0, height - 300))
        draw.ellipse((x0, y0, x0 + 400, y0 + 300), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    img.save(path, quality=90)


def make_jpegs(folder: Path, count: int, size: str, deadline: float) -> list[Path]:
    """Camera-sized JPEGs written in parallel (kept for the next run); fewer if time runs short."""
    width, height = (int(v) for v in size.lower().split("x"))
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"img{i:05d}_{width}x{height}.jpg" for i in range(count)]
    todo = [(str(p), width, height, i) for i, p in enumerate(paths) if not p.is_file()]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for start in range(0, len(todo), 64):
            if time.monotonic() > deadline:
                break
            list(pool.map(_one_jpeg, todo[start : start + 64]))
    return [p for p in paths if p.is_file()]


def model_only(encoder: Any, batch_sizes: list[int], seconds: float, budget: float) -> dict[str, Any]:
    """Auto-tuned batch size, then steady-state rates: from page-locked host memory (the copy to the
    device included) and, on CUDA, with the input already on the device."""
    from stair_es.runtime.cuda_io import HostBuffers

    tuned = encoder.tune_batch_size("image", candidates=batch_sizes, budget_seconds=budget)
    batch = tuned["batch_size"]
    height, width = encoder.manifest.image.size
    host = HostBuffers((3, height, width), batch)
    pixels = host.slot(0, batch)
    pixels[:] = np.random.default_rng(0).standard_normal(pixels.shape).astype(np.float32)

    def steady(run: Any) -> float:
        run()
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or count < 3:
            run()
            count += 1
        return count * batch / (time.perf_counter() - start)

    out = {"tuning": tuned, "batch_size": batch, "host_memory": host.kind}
    out["images_per_s_from_host"] = round(steady(lambda: encoder.run_images(pixels)), 1)
    session, info, _ = encoder._session("image")
    if info.is_cuda:
        import onnxruntime as ort

        binding = session.io_binding()
        on_device = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(pixels), "cuda", 0)
        binding.bind_ortvalue_input("pixel_values", on_device)
        for output in session.get_outputs():
            binding.bind_output(output.name, "cuda", 0)

        def device_resident() -> None:
            session.run_with_iobinding(binding)
            binding.synchronize_outputs()

        out["images_per_s_on_device"] = round(steady(device_resident), 1)
    host.close()
    return out


def end_to_end(encoder: Any, paths: list[Path], batch: int, workers: int) -> dict[str, Any]:
    from stair_es.runtime import StreamStats
    from stair_es.runtime.images import iter_decoded

    start = time.perf_counter()
    decoded = sum(
        1 for item in iter_decoded(paths, encoder.manifest.image, workers=workers) if item.error is None
    )
    decode_rate = decoded / (time.perf_counter() - start)
    stats = StreamStats()
    ok = sum(r.ok for r in encoder.iter_encode_images(paths, batch_size=batch, workers=workers, stats=stats))
    result = {
        "files": len(paths),
        "ok": ok,
        "decode_workers": workers,
        "decode_only_images_per_s": round(decode_rate, 1),
    }
    result.update(stats.to_dict())
    result["inference_share_of_wall"] = round(stats.inference_seconds / stats.wall_seconds, 3)
    result["bound_by"] = (
        "decode (CPU)" if stats.waiting_for_decode_seconds > 0.2 * stats.wall_seconds else "inference"
    )
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    started = time.monotonic()
    deadline = started + args.budget
    result: dict[str, Any] = {"machine": machine(args.provider), "quick": args.quick}
    tmp = tempfile.TemporaryDirectory(prefix="stair-gpu-")
    workdir = Path(args.workdir or tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        from stair_es.runtime import load_encoder

        t = time.monotonic()
        model = Path(args.model) if args.model else export_vit_b16(workdir, args.quick, args.precision)
        result["model"] = {"path": str(model), "prepare_seconds": round(time.monotonic() - t, 1)}
        encoder = load_encoder(model, provider=args.provider, precision=args.precision)
        info = encoder.provider_info("image")
        result["model"].update(
            provider=info.describe(), precision=encoder.active_precision("image"), model_id=encoder.model_id
        )
        sizes = [int(v) for v in args.batch_sizes.split(",")]
        result["model_only"] = model_only(
            encoder, sizes, args.seconds, max(5.0, (deadline - time.monotonic()) / 4)
        )
        jpegs = make_jpegs(workdir / "jpegs", args.jpegs, args.jpeg_size, started + args.budget / 2)
        result["end_to_end_jpeg"] = end_to_end(
            encoder, jpegs, result["model_only"]["batch_size"], args.decode_workers
        )
        result["end_to_end_jpeg"]["jpeg_size"] = args.jpeg_size
    except Exception as exc:  # noqa: BLE001 - the check reports what failed as JSON, then exits 1
        result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:500] if str(exc) else ''}"
    finally:
        tmp.cleanup()
    result["seconds"] = round(time.monotonic() - started, 1)
    result["machine"]["loadavg_1min_end"] = round(os.getloadavg()[0], 2)
    return result


if __name__ == "__main__":
    out = main()
    print(json.dumps(out, indent=2))
    sys.exit(1 if "error" in out else 0)
