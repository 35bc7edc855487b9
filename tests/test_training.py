"""Training semantics on tiny configs: stage masks/freezing, FLOPs effect, losses, resume."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from stair_es.data import SyntheticConfig, generate_synthetic, read_jsonl  # noqa: E402
from stair_es.model.modeling import StairModel  # noqa: E402
from stair_es.model.testing import tiny_model  # noqa: E402
from stair_es.training.batches import PairTensors, batch_indices, load_pairs  # noqa: E402
from stair_es.training.losses import contrastive_loss, flops_loss, quadratic_ramp  # noqa: E402
from stair_es.training.trainer import TrainConfig, Trainer, lr_factor  # noqa: E402


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("syn")
    manifests = generate_synthetic(
        root, SyntheticConfig(num_images=96, seed=5, test_fraction=0.25, image_size=32)
    )
    return {"train": read_jsonl(manifests["train"]), "test": read_jsonl(manifests["test"])}


def _data(model: StairModel, pairs) -> PairTensors:
    return load_pairs(pairs, model.tokenizer, model.preprocessor_config, model.config.max_text_length)


def _model(seed: int = 0) -> StairModel:
    return tiny_model(seed=seed, max_text_length=24)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_losses_match_their_definitions() -> None:
    scores = torch.tensor([[2.0, 0.5, 0.1], [0.3, 1.5, 0.2], [0.0, 0.4, 3.0]])
    log_p_rows = scores.log_softmax(dim=1).diag()
    log_p_cols = scores.log_softmax(dim=0).diag()
    expected = -0.5 * (log_p_rows.mean() + log_p_cols.mean())
    assert torch.allclose(contrastive_loss(scores), expected)
    vectors = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]])
    assert math.isclose(float(flops_loss(vectors)), 2.0**2 + 0.0 + 1.0**2)
    assert quadratic_ramp(0, 10) == 0.0 and quadratic_ramp(5, 10) == 0.25 and quadratic_ramp(20, 10) == 1.0
    assert quadratic_ramp(3, 0) == 1.0


def test_lr_schedule_warms_up_then_decays() -> None:
    factors = [lr_factor(s, 100, 10, 0.1) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert factors[-1] == pytest.approx(0.1, abs=0.01)


def test_batches_are_seeded_and_cover_each_epoch() -> None:
    first = [batch_indices(20, 5, s, seed=1) for s in range(4)]
    assert sorted(int(i) for b in first for i in b) == list(range(20))
    assert all(
        (a == b).all()
        for a, b in zip(first, [batch_indices(20, 5, s, seed=1) for s in range(4)], strict=True)
    )
    assert not (batch_indices(20, 5, 4, seed=1) == first[0]).all()  # next epoch, new order


def test_stage1_text_vectors_only_on_caption_tokens(synthetic) -> None:
    model = _model()
    data = _data(model, synthetic["train"][:16])
    trainer = Trainer(model, TrainConfig(stage="1", steps=2, batch_size=8, stage1_text="learned"), data)
    trainer.train()
    pixels, ids, mask = data.select(range(8))
    with torch.no_grad():
        _, text = trainer.encode_batch(pixels, ids, mask)
        unmasked = model.encode_text(ids, mask)
    for row in range(8):
        caption_ids = set(ids[row][mask[row] == 1].tolist())
        nonzero = set(torch.nonzero(text[row]).flatten().tolist())
        assert nonzero and nonzero <= caption_ids
    assert (unmasked > 0).sum() > (text > 0).sum()  # the mask, not the model, did the restricting
    trainer3 = Trainer(model, TrainConfig(stage="3", steps=1, batch_size=8), data)
    with torch.no_grad():
        _, text3 = trainer3.encode_batch(pixels, ids, mask)
    assert torch.equal(text3, unmasked)


def test_stage2_leaves_image_side_bit_identical(synthetic) -> None:
    model = _model()
    data = _data(model, synthetic["train"][:32])
    image_before = {
        **_state(model.vision_tower),
        **{f"head.{k}": v for k, v in _state(model.image_head).items()},
    }
    text_before = _state(model.text_head)
    Trainer(model, TrainConfig(stage="2", steps=4, batch_size=8, lr=1e-2, weight_decay=0.1), data).train()
    image_after = {
        **_state(model.vision_tower),
        **{f"head.{k}": v for k, v in _state(model.image_head).items()},
    }
    assert image_before.keys() == image_after.keys()
    for key, value in image_before.items():
        assert torch.equal(value, image_after[key]), key
    assert any(not torch.equal(v, _state(model.text_head)[k]) for k, v in text_before.items())


def test_dense_to_sparse_trains_only_heads(synthetic) -> None:
    model = _model()
    data = _data(model, synthetic["train"][:32])
    towers = {**_state(model.vision_tower), **{f"t.{k}": v for k, v in _state(model.text_tower).items()}}
    heads = {**_state(model.image_head), **{f"t.{k}": v for k, v in _state(model.text_head).items()}}
    Trainer(model, TrainConfig(stage="dense-to-sparse", steps=3, batch_size=8, lr=1e-2), data).train()
    towers_after = {
        **_state(model.vision_tower),
        **{f"t.{k}": v for k, v in _state(model.text_tower).items()},
    }
    heads_after = {**_state(model.image_head), **{f"t.{k}": v for k, v in _state(model.text_head).items()}}
    assert all(torch.equal(v, towers_after[k]) for k, v in towers.items())
    assert sum(not torch.equal(v, heads_after[k]) for k, v in heads.items()) >= 4


def _active_after_training(synthetic, flops_weight: float) -> tuple[float, float]:
    model = _model(seed=1)
    data = _data(model, synthetic["train"])
    cfg = TrainConfig(stage="3", steps=25, batch_size=24, lr=3e-3, flops_image=flops_weight,
                      flops_text=flops_weight, flops_ramp_fraction=0.2, seed=2)  # fmt: skip
    Trainer(model, cfg, data).train()
    model.eval()
    pixels, ids, mask = data.select(range(len(data)))
    with torch.no_grad():
        image, text = model.encode_image(pixels), model.encode_text(ids, mask)
    return float((image > 0).sum(1).float().mean()), float((text > 0).sum(1).float().mean())


def test_larger_flops_weight_gives_fewer_active_tokens(synthetic) -> None:
    weak_image, weak_text = _active_after_training(synthetic, 0.0)
    strong_image, strong_text = _active_after_training(synthetic, 1.0)
    assert strong_image < 0.5 * weak_image and strong_text < 0.5 * weak_text


def test_training_logs_loss_parts_and_held_out_recall(synthetic, tmp_path) -> None:
    model = _model()
    train, test = _data(model, synthetic["train"]), _data(model, synthetic["test"])
    trainer = Trainer(
        model, TrainConfig(stage="1", steps=4, batch_size=8, log_every=2), train, test, tmp_path
    )
    metrics = trainer.train()
    logged = [r for r in trainer.history if "contrastive" in r]
    assert len(logged) == 2
    for key in ["flops_image", "flops_text", "active_image", "active_text", "total", "lr", "temperature"]:
        assert key in logged[0]
    for key in ["t2i_r1", "i2t_r1", "t2i_r10", "active_fraction", "grounding"]:
        assert 0.0 <= metrics[key] <= (1.0 if key != "active_fraction" else 1.0)
    assert (tmp_path / "train_log.jsonl").read_text().count("\n") == len(trainer.history)


def test_resume_continues_exactly(synthetic, tmp_path) -> None:
    def run(steps: int, out, resume: bool, checkpoint_every: int = 0) -> StairModel:
        model = _model(seed=4)
        data = _data(model, synthetic["train"][:40])
        cfg = TrainConfig(stage="3", steps=steps, batch_size=8, checkpoint_every=checkpoint_every, seed=3)
        trainer = Trainer(model, cfg, data, output_dir=out)
        trainer.train(resume=resume)
        return model

    straight = run(6, tmp_path / "a", resume=False)
    run(6, tmp_path / "b", resume=False, checkpoint_every=3)  # writes step-3 (and would finish)
    checkpoints = sorted((tmp_path / "b" / "checkpoints" / "stage-3").glob("step-*"))
    assert [c.name for c in checkpoints] == ["step-0000003"]
    resumed = run(6, tmp_path / "b", resume=True)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


def test_trainer_rejects_bad_config(synthetic) -> None:
    from stair_es.errors import UsageError

    model = _model()
    data = _data(model, synthetic["train"][:8])
    with pytest.raises(UsageError, match="unknown stage"):
        Trainer(model, TrainConfig(stage="4"), data)
    with pytest.raises(ValueError, match="exceeds"):
        Trainer(model, TrainConfig(stage="3", steps=1, batch_size=16), data).train()


def test_dense_clip_baseline_trains_with_the_same_towers(synthetic) -> None:
    from stair_es.model.dense import DenseClipModel

    stair = _model()
    clip = DenseClipModel(stair.config, embed_dim=16, temperature_init=0.07)
    assert type(clip.vision_tower) is type(stair.vision_tower) and type(clip.text_tower) is type(
        stair.text_tower
    )
    train, test = _data(stair, synthetic["train"]), _data(stair, synthetic["test"])
    before = clip.log_temperature.item()
    metrics = Trainer(clip, TrainConfig(stage="dense", steps=3, batch_size=8, lr=1e-2), train, test).train()
    assert {"t2i_r1", "i2t_r1"} <= metrics.keys() and "active_fraction" not in metrics
    assert clip.log_temperature.item() != before


def test_hard_negative_sampler_picks_near_duplicate_captions() -> None:
    from stair_es.training.batches import HardNegativeSampler

    model = _model()
    captions = ["one big red circle", "one big red square", "two small blue stars", "one big red circle",
                "three small green crosses", "one big blue circle", "two big yellow stars"]  # fmt: skip
    ids, mask = model.tokenize(captions)
    sampler = HardNegativeSampler(ids, mask, captions, model.config.vocab_size)
    for step in range(10):
        batch = sampler.indices(4, step, seed=0, fraction=0.5)
        assert len(batch) == 4 and len(set(batch.tolist())) == 4
        assert (batch == sampler.indices(4, step, seed=0, fraction=0.5)).all()
        anchor, hard = int(batch[0]), int(batch[1])
        assert captions[hard] != captions[anchor]
        overlap = [len(set(c.split()) & set(captions[anchor].split())) for c in captions]
        candidates = [overlap[i] for i in range(len(captions)) if captions[i] != captions[anchor]]
        assert overlap[hard] == max(candidates)


def test_stage1_binary_text_is_the_caption_bag_and_grounding_loss_is_logged(synthetic) -> None:
    model = _model()
    data = _data(model, synthetic["train"][:16])
    pixels, ids, mask = data.select(range(8))
    trainer = Trainer(model, TrainConfig(stage="1", steps=1, batch_size=8, stage1_text="binary"), data)
    with torch.no_grad():
        _, text = trainer.encode_batch(pixels, ids, mask)
    vocab = model.tokenizer.get_vocab()
    for row in range(8):
        words = [w for w in data.captions[row].split() if vocab.get(w) not in model.config.zeroed_token_ids]
        assert set(torch.nonzero(text[row]).flatten().tolist()) == {vocab[w] for w in words}
        assert set(text[row][text[row] > 0].tolist()) == {1.0}
    cfg = TrainConfig(stage="3", steps=1, batch_size=8, grounding_weight=0.5, flops_image=0.0, flops_text=0.0)
    parts = Trainer(model, cfg, data).compute_loss(pixels, ids, mask)
    expected = parts["contrastive"] + 0.5 * parts["grounding"]
    assert torch.allclose(parts["total"], expected)


def test_build_model_zeroes_words_present_in_almost_every_caption(synthetic) -> None:
    from stair_es.training.recipes import ModelSize, build_model

    size = ModelSize(image_size=32, patch_size=8, hidden_size=32, layers=1, heads=2)
    model = build_model(synthetic["train"], size)
    vocab = model.tokenizer.get_vocab()
    assert "background" in model.config.stop_words and vocab["background"] in model.config.zeroed_token_ids
    assert vocab["red"] not in model.config.zeroed_token_ids and model.config.vocab_size >= 1000
    kept = build_model(synthetic["train"], ModelSize(**{**size.__dict__, "max_caption_frequency": None}))
    assert kept.tokenizer.get_vocab()["background"] not in kept.config.zeroed_token_ids


def test_token_tagging_loss_pushes_caption_words_up_and_others_down() -> None:
    from stair_es.training.losses import token_tagging_loss

    # image 0's caption has words 0 and 3, image 1's has word 1; word 2 is in no caption of the batch,
    # word 3 is zeroed (a stop word): neither is trained by this loss
    bag = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0]])
    keep = torch.tensor([1.0, 1.0, 1.0, 0.0])
    logits = torch.zeros(2, 4, requires_grad=True)
    token_tagging_loss(logits, bag, keep).backward()
    grad = logits.grad
    assert grad[0, 0] < 0 and grad[0, 1] > 0  # own word up; the other image's word down
    assert grad[1, 1] < 0 and grad[1, 0] > 0
    assert torch.all(grad[:, 2:] == 0)
    # class-balanced per word: a word in 1 caption of 3 is pushed up there as hard as down elsewhere
    bag3 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    logits3 = torch.zeros(3, 2, requires_grad=True)
    token_tagging_loss(logits3, bag3, torch.ones(2)).backward()
    word0 = logits3.grad[:, 0]
    assert math.isclose(float(-word0[0]), float(word0[1] + word0[2]), rel_tol=1e-6)
    confident = torch.tensor([[9.0, -9.0, 0.0, 0.0], [-9.0, 9.0, 0.0, 0.0]])
    assert float(token_tagging_loss(confident, bag, keep)) < 1e-3
    assert float(token_tagging_loss(torch.zeros(2, 4), bag, keep)) > 0.5


def test_tagging_loss_trains_image_stages_only(synthetic) -> None:
    model = _model()
    data = _data(model, synthetic["train"][:16])
    pixels, ids, mask = data.select(range(8))
    for stage, expected in (("1", True), ("2", False), ("3", True)):
        cfg = TrainConfig(stage=stage, steps=1, batch_size=8, tag_weight=0.5, flops_image=0.0, flops_text=0.0)
        parts = Trainer(model, cfg, data).compute_loss(pixels, ids, mask)
        assert ("tagging" in parts) is expected, stage
        if expected:
            assert torch.allclose(parts["total"], parts["contrastive"] + 0.5 * parts["tagging"])
    with pytest.raises(Exception, match="tagging weights"):
        TrainConfig(tag_weight=-1.0).validate()


def test_soft_pooling_anneals_to_the_exported_max(synthetic) -> None:
    """Early in a stage every position gets gradient (logsumexp); by its end training pools like the
    exported graph (hard max), so the model is not trained on a function it will not run."""
    model = _model()
    data = _data(model, synthetic["train"][:16])
    pixels, ids, mask = data.select(range(4))
    cfg = TrainConfig(stage="1", steps=10, batch_size=4, pool_temperature=0.5)
    trainer = Trainer(model, cfg, data)
    with torch.no_grad():
        exported = model.encode_image(pixels)
        soft, _, _ = trainer._encode(pixels, ids, mask)
        assert torch.all(soft >= exported - 1e-6) and not torch.allclose(soft, exported)
        trainer.step = cfg.steps
        hard, _, _ = trainer._encode(pixels, ids, mask)
        assert torch.allclose(hard, exported)
    with pytest.raises(Exception, match="pool_temperature"):
        TrainConfig(pool_temperature=-0.1).validate()
