"""One trainer, five modes: STAIR stages 1-3, dense-to-sparse, and the dense CLIP baseline objective.

Stage semantics (what makes the tokens grounded):
  "1"  the text vector is restricted to the caption's own tokens, so the image side can only score by
       lighting up words of its captions. ``stage1_text="binary"`` uses the caption's token bag itself
       (weight 1 per content token; measured to ground faster on the synthetic set), ``"learned"``
       the text tower's vector masked to those tokens (the literal reading of the paper; both towers
       co-train).
  "2"  image tower *and* image head frozen (not in the optimizer, bit-identical); the text side learns
       to expand into the grounded space the image side defines.
  "3"  everything learns jointly; ``grounding_weight`` adds the image-vs-caption-bag loss of stage 1
       so the image tokens stay on the caption's words while the towers co-adapt.
  "dense-to-sparse"  pretrained towers frozen, only the token heads (+ optionally the last blocks).
  "dense"  plain CLIP contrastive loss, no FLOPs, no masks (for the DenseClipModel baseline).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stair_es.errors import UsageError
from stair_es.model.modeling import caption_token_mask, tokenize
from stair_es.training import distributed
from stair_es.training.batches import HardNegativeSampler, PairTensors
from stair_es.training.d2s import encode_pooled, pooled_heads, teacher_scores
from stair_es.training.evaluation import retrieval_metrics, top_tokens
from stair_es.training.losses import (
    contrastive_loss,
    distillation_loss,
    flops_loss,
    multi_positive_loss,
    quadratic_ramp,
    token_tagging_loss,
)
from stair_es.training.parallel import MicroBatches, resolve_precision, wrap_ddp
from stair_es.training.streaming import StreamingPairs
from stair_es.training.views import ShortViews

STAGES = ("1", "2", "3", "dense-to-sparse", "dense")
TAGGING_STAGES = ("1", "3", "dense-to-sparse")  # the stages where the image token head learns
STATE_FILE = "trainer_state.pt"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Hyper-parameters of one stage. FLOPs weights ramp up quadratically over ``flops_ramp_fraction``."""

    stage: str = "3"
    steps: int = 100
    batch_size: int = 64
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.05
    max_grad_norm: float = 1.0
    flops_image: float = 1e-3
    flops_text: float = 1e-3
    flops_ramp_fraction: float = 0.3
    # L1 (mean weight sum, ramped like FLOPs): FLOPs barely touches long tails of tiny weights; L1 ends them
    l1_image: float = 0.0
    l1_text: float = 0.0
    hard_negative_fraction: float = 0.0  # share of each batch drawn as near-duplicate captions
    stage1_text: str = "binary"  # stage 1 text vector: "binary" caption token bag, or "learned" (tower x bag)
    grounding_weight: float = 0.0  # stage 3 / d2s: extra contrastive loss of images vs caption bags
    # stages 1, 3, d2s: per-token "is this word in the caption" loss on the image's pooled logits; it
    # trains every word detector on every image, where the contrastive loss only rewards the words
    # that separate the batch (colour does; shape, a harder visual cue, then never gets learned)
    tag_weight: float = 0.0
    # image side, stages 1/3/d2s: pool positions with tau * logsumexp(logits / tau), tau annealed linearly
    # from this value to 0 (= the exported max) over the stage. A hard max sends each token's gradient
    # to one position (at init CLS wins about a third of them); the soft max lets every patch learn
    # early (shape words ground faster), and the stage still ends on the exported function
    pool_temperature: float = 0.0
    # weight of the multi-positive loss on short views of the batch's captions ("red circles": every
    # image whose caption holds those words is a positive); see stair_es.training.views
    short_view_weight: float = 0.0
    distill_weight: float = 0.0  # pooled heads: match the dense model's in-batch ranking (training/d2s.py)
    expansion_control: float = 0.0  # pooled heads: chance (annealed to 0) of caption-masked text (d2s.py)
    learn_temperature: bool = True
    unfreeze_last_blocks: int = 0
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # False: fp32 everywhere (same as precision "fp32")
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16 (CUDA)
    log_every: int = 20
    eval_every: int = 0  # 0: evaluate once at the end
    checkpoint_every: int = 0  # 0: no intermediate checkpoints
    keep_checkpoints: int = 2

    def validate(self) -> None:
        if self.stage not in STAGES:
            raise UsageError(f"unknown stage {self.stage!r}; choose one of {', '.join(STAGES)}")
        if self.steps < 1 or self.batch_size < 2 or self.grad_accum < 1:
            raise UsageError("steps >= 1, batch size >= 2 and grad accumulation >= 1 are required")
        if self.stage1_text not in ("learned", "binary"):
            raise UsageError(f"stage1_text must be 'learned' or 'binary', got {self.stage1_text!r}")
        if (
            self.lr <= 0
            or min(self.flops_image, self.flops_text, self.l1_image, self.l1_text, self.tag_weight) < 0
        ):
            raise UsageError("the learning rate must be > 0, FLOPs, L1 and tagging weights >= 0")
        if self.pool_temperature < 0:
            raise UsageError(f"pool_temperature must be >= 0, got {self.pool_temperature}")
        if self.short_view_weight < 0:
            raise UsageError(f"short_view_weight must be >= 0, got {self.short_view_weight}")
        if self.distill_weight < 0 or not 0.0 <= self.expansion_control <= 1.0:
            raise UsageError("distill_weight must be >= 0 and expansion_control in [0, 1]")
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warmup then cosine decay to ``min_ratio`` of the peak."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class Trainer:
    """Trains ``model`` in one mode; ``train()`` returns the final held-out metrics."""

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        train_data: PairTensors | StreamingPairs,
        eval_data: PairTensors | None = None,
        output_dir: str | Path | None = None,
        log: Callable[[str], None] | None = None,
        tokenizer: Any = None,
    ) -> None:
        """``tokenizer`` tokenizes short views for models without one of their own (the dense baseline)."""
        config.validate()
        self.model, self.config, self.train_data, self.eval_data = model, config, train_data, eval_data
        self.output_dir = Path(output_dir) if output_dir else None
        self.log = log or logging.getLogger(__name__).info
        self.dist = distributed.current()
        self.device = distributed.device_for(config.device)
        self.model.to(self.device)
        self.use_amp, self.amp_dtype = resolve_precision(config, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.image_frozen = config.stage in ("2", "dense-to-sparse")
        self.trainable = self._configure_trainable()
        self.optimizer = self._build_optimizer()
        warmup = int(config.warmup_fraction * config.steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, config.steps, warmup, config.min_lr_ratio)
        )
        self.sampler = None
        if config.hard_negative_fraction > 0:
            vocab_size = int(train_data.input_ids.max()) + 1
            self.sampler = HardNegativeSampler(
                train_data.input_ids, train_data.attention_mask, train_data.captions, vocab_size
            )
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.dense_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None
        self.vocab = model.output_vocab() if getattr(model, "tokenizer", None) is not None else None
        self.pooled = pooled_heads(model, config)
        self.tokenizer = getattr(model, "tokenizer", None) or tokenizer
        self.views = self._short_views() if config.short_view_weight > 0 else None
        self.batches = MicroBatches(train_data, config, self.dist, self.sampler, self.log)
        self.ddp = wrap_ddp(self.model, self.compute_loss, self.device) if self.dist.enabled else None

    def _short_views(self) -> ShortViews:
        from stair_es.model.tokenizer import DEFAULT_STOP_WORDS

        if self.tokenizer is None:
            raise UsageError("short views need a tokenizer (pass one for models without their own)")
        stop_words = getattr(getattr(self.model, "config", None), "stop_words", None) or []
        return ShortViews(self.train_data.captions, DEFAULT_STOP_WORDS, stop_words)

    # --- setup ------------------------------------------------------------------------------------
    def _configure_trainable(self) -> list[nn.Parameter]:
        stage, model = self.config.stage, self.model
        for p in model.parameters():
            p.requires_grad_(True)
        if stage == "2":
            for p in model.image_parameters():
                p.requires_grad_(False)
        elif stage == "dense-to-sparse":
            for p in model.parameters():
                p.requires_grad_(False)
            for p in [
                *model.image_head.parameters(),
                *model.text_head.parameters(),
                *model.last_block_parameters(self.config.unfreeze_last_blocks),
            ]:
                p.requires_grad_(True)
            model.log_temperature.requires_grad_(True)
        if not self.config.learn_temperature:
            model.log_temperature.requires_grad_(False)
        return [p for p in model.parameters() if p.requires_grad]

    def _build_optimizer(self) -> torch.optim.Optimizer:
        """AdamW; no weight decay on biases, norms and the temperature (decaying them only hurts)."""
        decay = [p for p in self.trainable if p.ndim >= 2]
        no_decay = [p for p in self.trainable if p.ndim < 2]
        groups = [
            {"params": decay, "weight_decay": self.config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        fused = self.device.type == "cuda"
        return torch.optim.AdamW(groups, lr=self.config.lr, betas=(0.9, 0.98), eps=1e-6, fused=fused)

    def _set_modes(self) -> None:
        self.model.train()
        if self.image_frozen:  # frozen parts behave as at inference (dropout etc. off)
            self.model.vision_tower.eval()
            self.model.image_head.eval()
        if self.config.stage == "dense-to-sparse":
            self.model.text_tower.eval()

    # --- one step -------------------------------------------------------------------------------
    def encode_batch(
        self,
        pixels: torch.Tensor,
        ids: torch.Tensor,
        mask: torch.Tensor,
        bags: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and text vectors as this mode trains them (stage 1: text masked to caption tokens)."""
        image, text, _ = self._encode(pixels, ids, mask, bags)
        return image, text

    def _encode(
        self,
        pixels: torch.Tensor,
        ids: torch.Tensor,
        mask: torch.Tensor,
        bags: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(image vectors, text vectors, pooled image logits; None when the image side is frozen or dense).

        ``bags``: the captions in the output vocabulary when it is not the input tokenizer's."""
        cfg, model = self.config, self.model
        pooled = None
        self.dense_embeddings = None
        if self.pooled and cfg.stage != "2":  # heads on the dense model's embeddings (D2S)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
                encoded = encode_pooled(model, cfg, self.step, pixels, ids, mask, bags)
            self.dense_embeddings = encoded.dense
            return encoded.image, encoded.text, encoded.pooled
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            if self.image_frozen and cfg.stage == "2":
                with torch.no_grad():
                    image = model.encode_image(pixels)
            elif cfg.stage == "dense":
                image = model.encode_image(pixels)
            else:
                # == encode_image (pool, then log1p(relu), then zero the kept-out tokens); the pooled
                # logits also feed the token tagging loss
                logits = model.image_token_logits(pixels)
                tau = cfg.pool_temperature * max(0.0, 1.0 - self.step / max(1, cfg.steps))
                if tau > 0:  # soft max over positions early in the stage (see pool_temperature)
                    pooled = tau * torch.logsumexp(logits.float() / tau, dim=1)
                else:
                    pooled = logits.amax(dim=1).float()
                image = torch.log1p(torch.relu(pooled)) * model.keep_mask
            text = model.encode_text(ids, mask)
        image, text = image.float(), text.float()
        if cfg.stage == "1":
            bag_ids, bag_mask = bags if bags is not None else (ids, mask)
            bag = caption_token_mask(bag_ids, bag_mask, text.shape[1]) * self.model.keep_mask
            text = bag if cfg.stage1_text == "binary" else text * bag
        return image, text, pooled

    def _encode_views(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Short views as this mode encodes texts (stage 1: their token bag, like the captions)."""
        cfg, model = self.config, self.model
        if cfg.stage == "1" and cfg.stage1_text == "binary":
            return caption_token_mask(ids, mask, int(model.keep_mask.shape[0])) * model.keep_mask
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            text = model.encode_text(ids, mask).float()
        if cfg.stage == "1":
            text = text * caption_token_mask(ids, mask, text.shape[1]) * model.keep_mask
        return text

    def sample_views(
        self,
        indices: Sequence[int] | Any,
        batch_number: int,  # an index array
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input ids, attention mask, positives[view, image]) of the batch's short views."""
        assert self.views is not None
        texts, positives = self.views.sample(indices, self.config.seed, batch_number)
        ids, mask = tokenize(self.tokenizer, texts, int(self.model.config.max_text_length))
        device = self.device
        return ids.to(device), mask.to(device), torch.from_numpy(positives).to(device)

    def compute_loss(
        self,
        pixels: torch.Tensor,
        ids: torch.Tensor,
        mask: torch.Tensor,
        views: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
        bags: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Loss parts for one (micro-)batch; ``total`` is what is back-propagated. ``views``: the
        batch's short views (:meth:`sample_views`), scored against the batch's images. ``bags``: the
        captions in the output vocabulary (when it is not the input tokenizer's)."""
        cfg, model = self.config, self.model
        image, text, pooled = self._encode(pixels, ids, mask, bags)
        view_text = self._encode_views(views[0], views[1]) if views is not None else None
        grounding = cfg.grounding_weight > 0 and cfg.stage in ("3", "dense-to-sparse")
        tagging = cfg.tag_weight > 0 and pooled is not None and cfg.stage in TAGGING_STAGES
        if grounding or tagging:  # the caption's kept tokens, shared by both losses
            bag_ids, bag_mask = bags if bags is not None else (ids, mask)
            bag = caption_token_mask(bag_ids, bag_mask, text.shape[1]) * model.keep_mask
        scores = model.similarity(image, text) / model.temperature
        parts = {"contrastive": contrastive_loss(scores)}
        total = parts["contrastive"]
        if view_text is not None and views is not None:
            view_scores = model.similarity(view_text, image) / model.temperature  # [views, images]
            parts["short_views"] = multi_positive_loss(view_scores, views[2])
            total = total + cfg.short_view_weight * parts["short_views"]
        if cfg.stage != "dense":
            ramp = quadratic_ramp(self.step, int(cfg.flops_ramp_fraction * cfg.steps))
            parts["flops_image"] = flops_loss(image)
            # short views count too: their expansion is restrained like a caption's
            parts["flops_text"] = flops_loss(text if view_text is None else torch.cat([text, view_text]))
            total = total + ramp * (
                cfg.flops_image * parts["flops_image"] + cfg.flops_text * parts["flops_text"]
            )
            if cfg.l1_image or cfg.l1_text:
                parts["l1_image"], parts["l1_text"] = image.sum(dim=1).mean(), text.sum(dim=1).mean()
                total = total + ramp * (cfg.l1_image * parts["l1_image"] + cfg.l1_text * parts["l1_text"])
            parts["active_image"] = (image > 0).sum(dim=1).float().mean()
            parts["active_text"] = (text > 0).sum(dim=1).float().mean()
            if view_text is not None:
                parts["active_view"] = (view_text > 0).sum(dim=1).float().mean()
        if grounding:
            # keeps image tokens on the caption's words while the towers co-adapt (else stage 3 drifts)
            parts["grounding"] = contrastive_loss(model.similarity(image, bag) / model.temperature)
            total = total + cfg.grounding_weight * parts["grounding"]
        if tagging:
            parts["tagging"] = token_tagging_loss(pooled, bag, model.keep_mask)
            total = total + cfg.tag_weight * parts["tagging"]
        if cfg.distill_weight > 0 and self.dense_embeddings is not None:
            parts["distill"] = distillation_loss(scores, teacher_scores(model, self.dense_embeddings))
            total = total + cfg.distill_weight * parts["distill"]
        parts["total"] = total
        return parts

    def train_step(self) -> dict[str, float]:
        cfg = self.config
        self._set_modes()
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        for micro in range(cfg.grad_accum):
            batch_number = self.batches.number(self.step, micro)
            idx, pixels, ids, mask = self.batches.take(batch_number)
            pixels, ids, mask = (t.to(self.device, non_blocking=True) for t in (pixels, ids, mask))
            views = self.sample_views(idx, batch_number) if self.views is not None else None
            bags = self.train_data.select_bags(idx)
            if bags is not None:
                bags = (bags[0].to(self.device), bags[1].to(self.device))
            last = micro == cfg.grad_accum - 1
            with self.ddp.no_sync() if self.ddp is not None and not last else contextlib.nullcontext():
                parts = (self.ddp or self.compute_loss)(pixels, ids, mask, views, bags)
                self.scaler.scale(parts["total"] / cfg.grad_accum).backward()
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach()) / cfg.grad_accum
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, cfg.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        sums["grad_norm"] = float(grad_norm)
        return sums

    # --- loop ---------------------------------------------------------------------------------------
    def train(self, resume: bool = False) -> dict[str, float]:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        if resume:
            self.resume_from_latest()
        self.batches.open(self.step)
        started, window_start, window_steps = time.perf_counter(), time.perf_counter(), 0
        running: dict[str, float] = {}
        while self.step < cfg.steps:
            parts = self.train_step()
            window_steps += 1
            for key, value in parts.items():
                running[key] = running.get(key, 0.0) + value
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                elapsed = time.perf_counter() - window_start
                record: dict[str, Any] = {k: round(v / window_steps, 5) for k, v in running.items()}
                record.update(
                    step=self.step,
                    stage=cfg.stage,
                    lr=self.scheduler.get_last_lr()[0],
                    temperature=round(float(self.model.temperature.detach()), 5),
                    sec_per_step=round(elapsed / window_steps, 4),
                )
                self._record(record)
                running, window_start, window_steps = {}, time.perf_counter(), 0
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                self.evaluate()
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                self.save_checkpoint()
        self.batches.close()  # stops the decode workers
        metrics = self.evaluate() if self.eval_data is not None else {}
        metrics["train_seconds"] = round(time.perf_counter() - started, 2)
        return metrics

    def evaluate(self) -> dict[str, float]:
        if self.eval_data is None or not self.dist.is_main:  # rank 0 evaluates for everyone
            return {}
        metrics = retrieval_metrics(
            self.model, self.eval_data, self.vocab if self.config.stage != "dense" else None
        )
        record: dict[str, Any] = {"step": self.step, "stage": self.config.stage, "eval": metrics}
        if self.vocab is not None and self.config.stage != "dense":
            from stair_es.training.evaluation import encode_pairs

            first = PairTensors(*self.eval_data.select([0]), self.eval_data.captions[:1])
            image_vec, _ = encode_pairs(self.model, first)
            id_to_token = {i: t for t, i in self.vocab.items()}
            record["example"] = {
                "caption": first.captions[0],
                "image_top": top_tokens(image_vec[0], id_to_token),
            }
        self._record(record)
        return dict(metrics)

    def _record(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        self.history.append(record)
        self.log(describe_record(record, self.config.steps))  # people read this; the JSON goes to the file
        if self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            with (self.output_dir / "train_log.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    # --- checkpoints ------------------------------------------------------------------------------
    def _checkpoint_root(self) -> Path:
        if self.output_dir is None:
            raise UsageError("checkpoints need an output directory")
        return self.output_dir / "checkpoints" / f"stage-{self.config.stage}"

    def save_checkpoint(self) -> Path:
        """Model directory + optimizer/scheduler/scaler/step; keeps the newest ``keep_checkpoints``."""
        path = self._checkpoint_root() / f"step-{self.step:07d}"
        if not self.dist.is_main:  # every process holds the same weights; rank 0 writes them
            return path
        path.mkdir(parents=True, exist_ok=True)
        if hasattr(self.model, "save_pretrained"):
            self.model.save_pretrained(path)
        else:
            torch.save(self.model.state_dict(), path / "model_state.pt")
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "config": asdict(self.config),
            "torch_rng": torch.get_rng_state(),
        }
        torch.save(state, path / STATE_FILE)
        existing = sorted(self._checkpoint_root().glob("step-*"))
        for old in existing[: max(0, len(existing) - self.config.keep_checkpoints)]:
            shutil.rmtree(old, ignore_errors=True)
        self._record({"step": self.step, "stage": self.config.stage, "checkpoint": str(path)})
        return path

    def resume_from_latest(self) -> bool:
        """Continue from the newest checkpoint of this stage, if any (True when one was found)."""
        candidates = sorted(self._checkpoint_root().glob("step-*")) if self.output_dir else []
        candidates = [c for c in candidates if (c / STATE_FILE).is_file()]
        if not candidates:
            return False
        path = candidates[-1]
        if (path / "model.safetensors").is_file():
            from safetensors.torch import load_file

            self.model.load_state_dict(load_file(str(path / "model.safetensors"), device=str(self.device)))
        else:
            self.model.load_state_dict(torch.load(path / "model_state.pt", map_location=self.device))
        state = torch.load(path / STATE_FILE, map_location=self.device, weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"].cpu())
        self.step = int(state["step"])
        self._record({"step": self.step, "stage": self.config.stage, "resumed_from": str(path)})
        return True


def describe_record(record: dict[str, Any], steps: int) -> str:
    """One readable line for a training log record (``train_log.jsonl`` keeps the JSON)."""
    stage, step = record.get("stage"), record.get("step", 0)
    head = f"stage {stage} step {step}/{steps}"
    if "checkpoint" in record:
        return f"{head}: checkpoint {record['checkpoint']}"
    if "resumed_from" in record:
        return f"{head}: resumed from {record['resumed_from']}"
    if "eval" in record:
        metrics = record["eval"]
        shown = [f"{k} {v:.3f}" for k, v in metrics.items() if k.endswith(("_r1", "_r5")) or k == "grounding"]
        line = f"{head} held-out: " + ", ".join(shown)
        example = record.get("example")
        if example:
            tokens = " ".join(t for t, _ in example.get("image_top", [])[:6])
            line += f' | "{example.get("caption")}" -> image tokens: {tokens}'
        return line
    losses = [f"{k} {record[k]:.3g}" for k in ("contrastive", "tagging", "grounding") if k in record]
    active = (
        f", active tokens {record['active_image']:.0f} image / {record['active_text']:.0f} text"
        if "active_image" in record and "active_text" in record
        else ""
    )
    sec = float(record.get("sec_per_step") or 0.0)
    eta = f", ETA {_eta(sec * max(0, steps - int(step)))}" if sec else ""
    detail = f" ({', '.join(losses)})" if losses else ""
    return f"{head} loss {record.get('total', 0.0):.4g}{detail}{active}, {sec:.2f} s/step{eta}"


def _eta(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
