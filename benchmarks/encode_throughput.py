"""Encoder throughput: torch eager vs onnxruntime fp32 vs int8, and how close each runs to the
machine's GEMM limit, side by side in one run.

The same randomly initialised model (ViT-B/16 image tower, 12-layer BERT-base text tower, 30,522
token vocabulary) is exported with ``stair_es.export`` twice, as the product does (transformer
fusions, the faster of dynamic and static int8) and plain (no fusions, dynamic int8: the export
before issue 17), and run through ``stair_es.runtime``. Engines are timed in interleaved rounds
(torch, plain fp32, fp32, plain int8, int8, torch, ...) so load from other processes on a shared
machine hits all of them alike; medians of wall time and of process CPU time are reported (CPU
seconds are what a busy machine cannot inflate by making us wait).

The yardstick is the machine, not torch (``gemm_peak.py``): the model's own GEMM shapes (from an
onnxruntime profile) timed as single MatMuls in fp32 and in the model's int8 form give the time the
model would take doing nothing but GEMMs; ``*_fraction_of_gemm_peak`` = that / the model's time.

Also measured: the end-to-end rate over a folder of camera-sized JPEG files (decode + encode,
overlapped) with the split between decoding and inference, decode-only rates with and without
JPEG draft mode, the share of image FLOPs in the vocabulary head, the int8-vs-fp32 top-10 token agreement on
a trained model (the shipped demo model; also a saved torch model with ``--trained-model``). On a
CUDA machine it adds fp16 CUDA numbers.

    nice -n 5 python benchmarks/encode_throughput.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CAPTION_WORDS = (
    "a man riding a red bike along the beach near two dogs and a small boat under a cloudy sky while "
    "children play with a yellow kite in the green park beside old buildings at sunset"
).split()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per engine (after one warm-up)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch and onnxruntime threads")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--patch-size", type=int, default=16)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--vocab", type=int, default=30522)
    p.add_argument("--text-words", type=int, default=20, help="words per benchmark caption (~tokens)")
    p.add_argument("--jpegs", type=int, default=64, help="JPEG files for the end-to-end run (0: skip)")
    p.add_argument("--jpeg-size", default="1600x1200", help="WxH of the generated JPEG files")
    p.add_argument(
        "--trained-model", default=os.environ.get("STAIR_ES_TRAINED_MODEL"), help="saved model dir"
    )
    p.add_argument(
        "--agreement-data",
        default=None,
        help="held-out JSONL ({image, caption}) for the trained-model agreement [default: built-in samples]",
    )
    p.add_argument(
        "--agreement-only", action="store_true", help="only the int8-vs-fp32 agreement on --trained-model"
    )
    p.add_argument("--workdir", default=None, help="keep exports here instead of a temp dir")
    p.add_argument("--reuse", action="store_true", help="reuse the exports an earlier run left in --workdir")
    p.add_argument("--tune-batch", action="store_true", help="also run batch-size auto-tuning (int8 image)")
    p.add_argument("--quick", action="store_true", help="tiny config: checks the script, not the numbers")
    args = p.parse_args(argv)
    if args.quick:
        args.image_size, args.patch_size, args.hidden, args.layers, args.heads = 32, 8, 64, 2, 2
        args.vocab, args.batch_size, args.rounds, args.jpegs = 2000, 8, 2, 8
    return args


def log(args: argparse.Namespace, msg: str) -> None:
    if not args.json:
        print(msg, file=sys.stderr, flush=True)
    else:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)


def build_model(args: argparse.Namespace, workdir: Path) -> tuple[Any, Any]:
    """Random-weight StairModel of the requested size + ModelSources for export."""
    import torch

    from stair_es.export import ModelSources
    from stair_es.model import StairConfig, StairModel
    from stair_es.model.tokenizer import build_wordpiece_tokenizer, zeroed_token_ids
    from stair_es.runtime import ImagePreprocessing

    torch.manual_seed(0)
    filler = " ".join(f"tok{i}" for i in range(args.vocab))
    tokenizer = build_wordpiece_tokenizer([" ".join(CAPTION_WORDS), filler], args.vocab, max_length=64)
    config = StairConfig.small(
        tokenizer.get_vocab_size(),
        zeroed_token_ids(tokenizer),
        image_size=args.image_size,
        patch_size=args.patch_size,
        hidden_size=args.hidden,
        layers=args.layers,
        heads=args.heads,
        max_text_length=64,
    )
    model = StairModel(config, tokenizer).eval()
    tok_path = workdir / "tokenizer.json"
    tokenizer.save(str(tok_path))
    spec = ImagePreprocessing(size=(args.image_size, args.image_size))
    return model, ModelSources(tok_path, spec, 64, "bench-random", list(config.zeroed_token_ids))


def captions(n: int, words: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(CAPTION_WORDS, size=words)) for _ in range(n)]


def interleaved(engines: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Median seconds per call; one warm-up each, then rounds alternating between engines."""
    for fn in engines.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds):
        for name, fn in engines.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def head_flops_share(args: argparse.Namespace) -> float:
    """Share of image-tower FLOPs spent in the token head (dense + vocabulary projection)."""
    t = (args.image_size // args.patch_size) ** 2 + 1
    d, v, layers = args.hidden, args.vocab, args.layers
    body = layers * (24 * d * d * t + 4 * t * t * d) + 2 * 3 * args.patch_size**2 * d * (t - 1)
    head = 2 * t * (d * d + d * v)
    return head / (body + head)


def make_jpegs(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(1)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    paths = []
    for i in range(count):
        base = np.stack(
            [(xx * (i % 7 + 1) // 5) % 256, (yy * (i % 5 + 2) // 5) % 256, ((xx + yy) // 7) % 256], -1
        )
        noise = rng.integers(0, 24, size=(h, w, 3))
        img = Image.fromarray((base + noise).clip(0, 255).astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x0, y0 = int(rng.integers(0, w - 200)), int(rng.integers(0, h - 200))
            draw.ellipse((x0, y0, x0 + 200, y0 + 150), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        path = folder / f"img{i:04d}.jpg"
        img.save(path, quality=90)
        paths.append(path)
    return paths


def decode_rate(paths: list[Path], spec: Any, workers: int, draft: bool) -> float:
    from stair_es.runtime.images import decode_image, iter_decoded, resize_and_crop, to_pixel_values

    if draft:
        start = time.perf_counter()
        n = sum(1 for item in iter_decoded(paths, spec, workers=workers) if item.pixels is not None)
        return n / (time.perf_counter() - start)
    from concurrent.futures import ThreadPoolExecutor

    def full(path: Path) -> np.ndarray:
        return to_pixel_values(resize_and_crop(decode_image(path), spec), spec)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        n = len(list(pool.map(full, paths)))
    return n / (time.perf_counter() - start)


def lean_encoder(root: Path, precision: str, threads: int) -> Any:
    """The product's encoder and graphs, with sessions that return their memory after each run:
    five ViT-B/BERT-base engines side by side would otherwise keep ~1.5 GB of onnxruntime arena each
    (a batch of 32 makes a 770 MB logits tensor), enough to exhaust a shared 23 GB machine. No
    spinning: idle onnxruntime threads would steal the cores torch runs on next."""
    import onnxruntime as ort

    from stair_es.runtime import Encoder, Manifest, ProviderInfo
    from stair_es.runtime.sessions import session_options

    class LeanEncoder(Encoder):
        def _open(self, tower: str) -> tuple[Any, Any, str]:
            opts = session_options(ort, threads, spin=False)
            opts.enable_cpu_mem_arena = False
            path = self.manifest.graph_path(precision, tower)
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            return session, ProviderInfo("cpu", "CPUExecutionProvider", "benchmark", threads), precision

    return LeanEncoder(Manifest.read(root), provider="cpu", precision=precision, intra_op_threads=threads)


def timed_rounds(engines: dict[str, Callable[[], Any]], rounds: int) -> dict[str, dict[str, float]]:
    """Per engine: median and min of wall and process-CPU seconds; one warm-up each, then rounds
    alternating between engines."""
    for fn in engines.values():
        fn()
    wall: dict[str, list[float]] = {n: [] for n in engines}
    cpu: dict[str, list[float]] = {n: [] for n in engines}
    for _ in range(rounds):
        for name, fn in engines.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - w)
            cpu[name].append(time.process_time() - c)
    return {
        n: {
            "wall": statistics.median(wall[n]),
            "wall_min": min(wall[n]),
            "cpu": statistics.median(cpu[n]),
            "cpu_min": min(cpu[n]),
        }
        for n in engines
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import onnxruntime
    import torch

    from stair_es.export import Tolerance, export_module
    from stair_es.runtime import StreamStats
    from stair_es.runtime.sessions import cuda_unavailable_reason

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from int8_agreement import demo_int8_agreement, int8_agreement_on

    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory(prefix="stair-bench-")
    workdir = Path(args.workdir or tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    if args.agreement_only:
        if not args.trained_model:
            return {"int8_top10_agreement_trained": demo_int8_agreement(workdir)}
        return {
            "int8_top10_agreement_trained": int8_agreement_on(
                args.trained_model, workdir, args.agreement_data
            )
        }
    loads = {"start": round(os.getloadavg()[0], 2)}
    result: dict[str, Any] = {
        "config": {
            "image_tower": f"ViT {args.layers}L/{args.hidden}d patch {args.patch_size} @ {args.image_size}px",
            "text_tower": f"BERT {args.layers}L/{args.hidden}d",
            "vocab_size": args.vocab,
            "batch_size": args.batch_size,
            "text_tokens": None,
            "threads": args.threads,
            "rounds": args.rounds,
            "quick": args.quick,
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_1min": loads,
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }

    log(args, "building and exporting the model: optimized (fused, best int8) and plain ...")
    model, sources = build_model(args, workdir)
    # Random weights make near-ties among tokens, so int8 agreement here is informative only; the
    # int8 quality bar is measured on a trained model below.
    lax = {"int8": Tolerance(None, 0.0)}
    start = time.perf_counter()
    if args.reuse and (workdir / "onnx-plain" / "manifest.json").is_file():
        from stair_es.runtime import Manifest

        manifest, plain = Manifest.read(workdir / "onnx"), Manifest.read(workdir / "onnx-plain")
        result["export_seconds"] = "reused from an earlier run (--reuse)"
    else:
        manifest = export_module(
            model,
            sources,
            workdir / "onnx",
            int8=True,
            overwrite=True,
            tolerances=lax,
            log=lambda m: log(args, m),
        )
        result["export_seconds"] = round(time.perf_counter() - start, 1)
        plain = export_module(
            model, sources, workdir / "onnx-plain", int8=True, overwrite=True, tolerances=lax, optimize=False
        )
    result["parity"] = manifest.parity
    result["auto"] = manifest.auto
    result["optimization"] = manifest.optimization
    loads["after_export"] = round(os.getloadavg()[0], 2)
    encoders = {
        "ort_fp32_plain": lean_encoder(plain.root, "fp32", args.threads),
        "ort_fp32": lean_encoder(manifest.root, "fp32", args.threads),
        "ort_int8_plain": lean_encoder(plain.root, "int8", args.threads),
        "ort_int8": lean_encoder(manifest.root, "int8", args.threads),
    }
    fp32, int8 = encoders["ort_fp32"], encoders["ort_int8"]

    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((args.batch_size, 3, args.image_size, args.image_size)).astype(np.float32)
    texts = captions(args.batch_size, args.text_words)
    ids, mask = fp32.tokenizer(texts)
    result["config"]["text_tokens"] = int(ids.shape[1])
    px_t, ids_t, mask_t = torch.from_numpy(pixels), torch.from_numpy(ids), torch.from_numpy(mask)

    def torch_image() -> Any:
        with torch.inference_mode():
            return model.encode_image(px_t)

    def torch_text() -> Any:
        with torch.inference_mode():
            return model.encode_text(ids_t, mask_t)

    log(args, "timing image towers (interleaved) ...")
    image = timed_rounds(
        {"torch": torch_image, **{n: (lambda e=e: e.run_images(pixels)) for n, e in encoders.items()}},
        args.rounds,
    )
    loads["after_image"] = round(os.getloadavg()[0], 2)
    for enc in encoders.values():  # free the image sessions before the text ones load
        enc._sessions.pop("image", None)
    log(args, "timing text towers (interleaved) ...")
    text = timed_rounds(
        {"torch": torch_text, **{n: (lambda e=e: e.run_text(ids, mask)) for n, e in encoders.items()}},
        args.rounds,
    )
    loads["after_text"] = round(os.getloadavg()[0], 2)
    b = args.batch_size
    for name in ("torch", *encoders):
        result[name] = {
            "image_per_s": round(b / image[name]["wall"], 2),
            "text_per_s": round(b / text[name]["wall"], 2),
            "image_per_cpu_s": round(b / image[name]["cpu"], 2),
            "text_per_cpu_s": round(b / text[name]["cpu"], 2),
        }
    for tower, times in (("image", image), ("text", text)):
        for precision in ("fp32", "int8"):
            key = "ort" if precision == "fp32" else "int8"
            for suffix, engine in (("", f"ort_{precision}"), ("_plain", f"ort_{precision}_plain")):
                result[f"{key}_vs_torch_{tower}{suffix}"] = round(
                    times["torch"]["wall"] / times[engine]["wall"], 2
                )
                result[f"{key}_vs_torch_{tower}{suffix}_cpu_time"] = round(
                    times["torch"]["cpu"] / times[engine]["cpu"], 2
                )

    log(args, "GEMM limits: the model's GEMM shapes as single MatMuls, fp32 and int8 ...")
    methods = {t: manifest.optimization["int8"][t]["chosen"] for t in ("image", "text")}
    import gemm_peak

    feeds = {"image": {"pixel_values": pixels}, "text": {"input_ids": ids, "attention_mask": mask}}
    result["gemm_peak"] = {
        tower: gemm_peak.limits(
            plain.graph_path("fp32", tower), feeds[tower], methods[tower], times, args.threads, args.rounds
        )
        for tower, times in (("image", image), ("text", text))
    }
    loads["after_gemm"] = round(os.getloadavg()[0], 2)
    for precision in ("fp32", "int8"):
        key = f"{precision}_fraction_of_gemm_peak"
        result[key] = {t: result["gemm_peak"][t][key] for t in ("image", "text")}

    # Head cost: FLOPs share, and the measured share of the torch image time.
    with torch.inference_mode():
        hidden = model.vision_tower(pixel_values=px_t).last_hidden_state
        hidden = model._vision_core().post_layernorm(hidden)

        def head_only() -> Any:
            with torch.inference_mode():
                return torch.log1p(torch.relu(model.image_head(hidden).amax(1)))

        head = interleaved({"head": head_only}, max(1, args.rounds - 1))["head"]
    result["image_head"] = {
        "flops_share": round(head_flops_share(args), 3),
        "torch_time_share": round(head / image["torch"]["wall"], 3),
        "pooling": "max over positions before log1p(relu) (one activation per vocabulary entry, not per position)",
    }

    if args.jpegs:
        log(args, f"end-to-end over {args.jpegs} JPEG files ...")
        folder = workdir / "jpegs"
        folder.mkdir(exist_ok=True)
        w, h = (int(v) for v in args.jpeg_size.lower().split("x"))
        paths = make_jpegs(folder, args.jpegs, (w, h))
        spec = fp32.manifest.image
        e2e: dict[str, Any] = {"files": len(paths), "jpeg_size": args.jpeg_size, "workers": args.threads}
        e2e["decode_only_per_s_draft"] = round(decode_rate(paths, spec, args.threads, draft=True), 1)
        e2e["decode_only_per_s_full_decode"] = round(decode_rate(paths, spec, args.threads, draft=False), 1)
        for name, enc in (("ort_int8", int8), ("ort_fp32", fp32)):
            stats = StreamStats()
            ok = sum(
                r.ok for r in enc.iter_encode_images(paths, batch_size=b, workers=args.threads, stats=stats)
            )
            e2e[name] = {**stats.to_dict(), "ok": ok}
            e2e[name]["inference_share_of_wall"] = round(stats.inference_seconds / stats.wall_seconds, 3)
        result["end_to_end_jpeg"] = e2e

    if args.tune_batch:
        log(args, "batch-size tuning (int8 image tower) ...")
        result["batch_tuning_int8_image"] = int8.tune_batch_size("image", budget_seconds=120)

    log(args, "int8 vs fp32 agreement on the trained demo model ...")
    result["int8_top10_agreement_trained"] = demo_int8_agreement(workdir)
    if args.trained_model:
        log(args, f"int8 vs fp32 agreement on trained model {args.trained_model} ...")
        result["int8_top10_agreement_trained_model_dir"] = int8_agreement_on(
            args.trained_model, workdir, args.agreement_data
        )

    blocker = cuda_unavailable_reason(onnxruntime)
    if blocker is None:
        result["cuda_fp16"] = cuda_fp16(model, sources, workdir, pixels, ids, mask, args)
    else:
        result["cuda_fp16"] = {"not_measured": blocker}
    loads["end"] = round(os.getloadavg()[0], 2)
    result["targets"] = targets(result)
    tmp.cleanup()
    return result


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """Issue 17's CPU targets against this run's figures (met: true/false)."""
    checks = {
        "fp32_fraction_of_gemm_peak_image >= 0.8": result["fp32_fraction_of_gemm_peak"]["image"] >= 0.8,
        "int8_fraction_of_gemm_peak_image >= 0.6": result["int8_fraction_of_gemm_peak"]["image"] >= 0.6,
        "ort_fp32_vs_torch_image >= 1.2": result["ort_vs_torch_image"] >= 1.2,
        "ort_fp32_vs_torch_text >= 1.2": result["ort_vs_torch_text"] >= 1.2,
        "int8_vs_torch_image >= 3": result["int8_vs_torch_image"] >= 3.0,
    }
    trained = result.get("int8_top10_agreement_trained", {})
    chosen = result["optimization"]["int8"]
    for tower in ("image", "text"):
        method = chosen[tower]["chosen"]
        key = f"{tower}_{method}_top10_agreement"
        if key in trained:
            checks[f"trained int8 ({method}) {tower} top-10 agreement >= 0.9"] = trained[key] >= 0.9
    return checks


def cuda_fp16(
    model: Any, sources: Any, workdir: Path, pixels: Any, ids: Any, mask: Any, args: Any
) -> dict[str, Any]:
    """fp16 CUDA images/s and texts/s (only on a machine with a working CUDA provider)."""
    from stair_es.export import export_module
    from stair_es.runtime import load_encoder

    manifest = export_module(model, sources, workdir / "onnx16", fp16=True, overwrite=True)
    enc = load_encoder(manifest.root, provider="cuda", precision="fp16")
    times = interleaved(
        {"image": lambda: enc.run_images(pixels), "text": lambda: enc.run_text(ids, mask)}, args.rounds * 3
    )
    return {
        "provider": enc.provider_info("image").describe(),
        "image_per_s": round(len(pixels) / times["image"], 1),
        "text_per_s": round(len(ids) / times["text"], 1),
        "parity": manifest.parity.get("fp16"),
    }


if __name__ == "__main__":
    out = main()
    print(json.dumps(out, indent=2))
