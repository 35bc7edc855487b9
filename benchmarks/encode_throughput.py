"""Encoder throughput: torch eager vs onnxruntime fp32 vs int8, side by side in one run.

The same randomly initialised model (ViT-B/16 image tower, 12-layer BERT-base text tower, 30,522
token vocabulary) is exported with ``stair_es.export`` and run through ``stair_es.runtime`` exactly
as the product does. Engines are timed in interleaved rounds (torch, fp32, int8, torch, ...) so load
from other processes on a shared machine hits all of them alike; medians are reported.

Also measured: the end-to-end rate over a folder of camera-sized JPEG files (decode + encode,
overlapped) with the split between decoding and inference, decode-only rates with and without
JPEG draft mode, the share of image FLOPs in the vocabulary head, and (with ``--trained-model``) the
int8-vs-fp32 top-10 token agreement on a trained model. On a CUDA machine it adds fp16 CUDA numbers.

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


def int8_agreement_on(model_dir: str, workdir: Path, data: str | None = None) -> dict[str, Any]:
    """int8 vs fp32 top-10 agreement (onnxruntime, both) on a trained model, over held-out pairs
    from ``data`` when given, else the export's built-in sample images and captions."""
    from stair_es.export import Tolerance, export_model, topk_agreement
    from stair_es.export.parity import SAMPLE_TEXTS, sample_images
    from stair_es.runtime import Manifest, load_encoder

    lax = {"int8": Tolerance(None, 0.0)}
    out = export_model(model_dir, workdir / "trained", int8=True, overwrite=True, tolerances=lax).root
    fp32 = load_encoder(out, provider="cpu", precision="fp32")
    int8 = load_encoder(out, provider="cpu", precision="int8")
    if data:
        from stair_es.data.readers import read_jsonl

        pairs = read_jsonl(data)[:64]
        texts = [p.caption for p in pairs]
        images: list[Any] = list(dict.fromkeys(str(p.image) for p in pairs))
    else:
        texts = SAMPLE_TEXTS + captions(24, 12, seed=3)
        images = sample_images(32, seed=5)
    result: dict[str, Any] = {"model": str(model_dir), "texts": len(texts), "images": len(images)}
    parity = Manifest.read(out).parity["int8"]
    result["export_parity_int8_vs_torch"] = {t: parity[t]["top10_agreement"] for t in ("image", "text")}
    for tower, run in (
        ("text", lambda e: e.encode_texts(texts)),
        ("image", lambda e: e.encode_images(images)),
    ):
        a, b = run(fp32), run(int8)
        dense = [np.zeros((len(a), fp32.manifest.vocab_size), np.float32) for _ in range(2)]
        for k, vecs in enumerate((a, b)):
            for i, v in enumerate(vecs):
                dense[k][i, v.ids] = v.weights
        result[f"{tower}_top10_agreement"] = round(topk_agreement(dense[0], dense[1], 10), 4)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import onnxruntime
    import torch

    from stair_es.export import Tolerance, export_module
    from stair_es.runtime import StreamStats, load_encoder
    from stair_es.runtime.sessions import cuda_unavailable_reason

    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory(prefix="stair-bench-")
    workdir = Path(args.workdir or tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    if args.agreement_only:
        if not args.trained_model:
            raise SystemExit("--agreement-only needs --trained-model")
        return {
            "int8_top10_agreement_trained": int8_agreement_on(
                args.trained_model, workdir, args.agreement_data
            )
        }
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
            "loadavg_start": os.getloadavg()[0],
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }

    log(args, "building and exporting the model (fp32 + int8) ...")
    model, sources = build_model(args, workdir)
    start = time.perf_counter()
    # Random weights make near-ties among tokens, so int8 agreement here is informative only; the
    # int8 quality bar is measured on a trained model below.
    lax = {"int8": Tolerance(None, 0.0)}
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
    result["parity"] = manifest.parity
    # No spinning: idle onnxruntime threads would otherwise steal the cores torch runs on next.
    opts = {"provider": "cpu", "intra_op_threads": args.threads, "spin": False}
    fp32 = load_encoder(manifest.root, precision="fp32", **opts)
    int8 = load_encoder(manifest.root, precision="int8", **opts)

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
    image = interleaved(
        {
            "torch": torch_image,
            "ort_fp32": lambda: fp32.run_images(pixels),
            "ort_int8": lambda: int8.run_images(pixels),
        },
        args.rounds,
    )
    log(args, "timing text towers (interleaved) ...")
    text = interleaved(
        {
            "torch": torch_text,
            "ort_fp32": lambda: fp32.run_text(ids, mask),
            "ort_int8": lambda: int8.run_text(ids, mask),
        },
        args.rounds,
    )
    b = args.batch_size
    for name in ("torch", "ort_fp32", "ort_int8"):
        result[name] = {"image_per_s": round(b / image[name], 2), "text_per_s": round(b / text[name], 2)}
    result["ort_vs_torch_image"] = round(image["torch"] / image["ort_fp32"], 2)
    result["ort_vs_torch_text"] = round(text["torch"] / text["ort_fp32"], 2)
    result["int8_vs_torch_image"] = round(image["torch"] / image["ort_int8"], 2)
    result["int8_vs_torch_text"] = round(text["torch"] / text["ort_int8"], 2)

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
        "torch_time_share": round(head / image["torch"], 3),
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

    if args.trained_model:
        log(args, f"int8 vs fp32 agreement on trained model {args.trained_model} ...")
        result["int8_top10_agreement_trained"] = int8_agreement_on(
            args.trained_model, workdir, args.agreement_data
        )
    else:
        result["int8_top10_agreement_trained"] = {
            "not_measured": "no trained model given (--trained-model / STAIR_ES_TRAINED_MODEL)"
        }

    blocker = cuda_unavailable_reason(onnxruntime)
    if blocker is None:
        result["cuda_fp16"] = cuda_fp16(model, sources, workdir, pixels, ids, mask, args)
    else:
        result["cuda_fp16"] = {"not_measured": blocker}
    result["machine"]["loadavg_end"] = os.getloadavg()[0]
    tmp.cleanup()
    return result


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
