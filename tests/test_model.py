"""StairModel: pooling, zeroed tokens, tokenizer coverage and the save/load directory contract."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from stair_es.model import StairConfig, StairModel, caption_token_mask, sparse_max_pool  # noqa: E402
from stair_es.model.testing import tiny_model  # noqa: E402
from stair_es.model.tokenizer import build_wordpiece_tokenizer, zeroed_token_ids  # noqa: E402


@pytest.fixture(scope="module")
def model() -> StairModel:
    return tiny_model(seed=3)


def test_pooling_before_activation_equals_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 50, generator=gen) * 3
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1, 0, 0, 0, 0, 0, 0]])
    keep = torch.ones(50)
    reference = torch.log1p(torch.relu(logits))  # activation per position, then pool
    reference = reference.masked_fill(mask.unsqueeze(-1) == 0, 0.0).amax(dim=1)
    assert torch.allclose(sparse_max_pool(logits, keep, mask), reference, atol=1e-6)
    # padded positions never win, even if their logits are the largest
    logits[1, 5:] = 100.0
    assert torch.allclose(sparse_max_pool(logits, keep, mask)[1], reference[1], atol=1e-6)


def test_model_pooling_matches_per_position_reference(model: StairModel) -> None:
    pixels = torch.randn(2, 3, 32, 32)
    ids, mask = model.tokenize(["two big red circles on the left", "a star"])
    with torch.no_grad():
        per_pos = torch.log1p(torch.relu(model.image_token_logits(pixels))).amax(dim=1) * model.keep_mask
        assert torch.allclose(model.encode_image(pixels), per_pos, atol=1e-6)
        text_pos = torch.log1p(torch.relu(model.text_token_logits(ids, mask)))
        text_ref = text_pos.masked_fill(mask.unsqueeze(-1) == 0, 0).amax(dim=1) * model.keep_mask
        assert torch.allclose(model.encode_text(ids, mask), text_ref, atol=1e-6)


def test_special_and_stop_tokens_always_zero(model: StairModel) -> None:
    vocab = model.tokenizer.get_vocab()
    zeroed = set(model.config.zeroed_token_ids)
    for token in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", ".", ",", "the", "a", "on"]:
        assert vocab[token] in zeroed, token
    with torch.no_grad():
        # push every logit of the zeroed tokens up: they must still come out exactly 0
        model.image_head.projection.bias[list(zeroed)] += 50.0
        model.text_head.projection.bias[list(zeroed)] += 50.0
        try:
            image = model.encode_image(torch.randn(3, 3, 32, 32))
            text = model.encode_text(*model.tokenize(["the red square . [SEP]", "a dog on the beach"]))
        finally:
            model.image_head.projection.bias[list(zeroed)] -= 50.0
            model.text_head.projection.bias[list(zeroed)] -= 50.0
    idx = torch.tensor(sorted(zeroed))
    assert torch.all(image[:, idx] == 0) and torch.all(text[:, idx] == 0)
    assert (image > 0).any() and (text > 0).any()


def test_outputs_are_non_negative_and_shaped(model: StairModel) -> None:
    with torch.no_grad():
        image = model.encode_image(torch.randn(4, 3, 32, 32))
        text = model.encode_text(*model.tokenize(["red", "three small blue stars at the top"]))
    assert image.shape == (4, model.config.vocab_size) and text.shape == (2, model.config.vocab_size)
    assert image.min() >= 0 and text.min() >= 0
    assert model.similarity(image, text).shape == (4, 2)


def test_caption_token_mask_marks_only_caption_tokens(model: StairModel) -> None:
    ids, mask = model.tokenize(["red circle", "blue star on the left"])
    cap = caption_token_mask(ids, mask, model.config.vocab_size)
    vocab = model.tokenizer.get_vocab()
    assert cap[0, vocab["red"]] == 1 and cap[0, vocab["circle"]] == 1 and cap[0, vocab["blue"]] == 0
    assert cap[1].sum() == len(set(ids[1][mask[1] == 1].tolist()))


def test_tokenizer_covers_english_and_spells_unknown_words() -> None:
    tokenizer = build_wordpiece_tokenizer(["a zebra qwzx"])
    vocab = tokenizer.get_vocab()
    assert len(vocab) >= 1000
    for word in ["dog", "beach", "umbrella", "kitchen", "running", "mountain", "yellow", "pizza"]:
        assert word in vocab, word
    tokens = tokenizer.encode("Qwzx DOG").tokens
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and "dog" in tokens and "[UNK]" not in tokens
    capped = build_wordpiece_tokenizer(["zebra"], vocab_size=1000)
    assert capped.get_vocab_size() == 1000 and "zebra" in capped.get_vocab()
    assert set(zeroed_token_ids(capped, ["the"])) >= {capped.token_to_id("[PAD]"), capped.token_to_id("the")}


def test_save_load_round_trip_is_identical(tmp_path, model: StairModel) -> None:
    model.save_pretrained(tmp_path / "m", extra_files={"training.json": {"recipe": "test"}})
    for name in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "preprocessor_config.json",
        "training.json",
    ]:
        assert (tmp_path / "m" / name).is_file()
    pre = json.loads((tmp_path / "m" / "preprocessor_config.json").read_text())
    assert pre["image_size"] == 32 and pre["max_text_length"] == model.config.max_text_length
    loaded = StairModel.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config
    pixels = torch.randn(2, 3, 32, 32)
    ids, mask = model.tokenize(["two small green diamonds in the center", "dog"])
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(pixels), model.encode_image(pixels))
        assert torch.equal(loaded.encode_text(ids, mask), model.encode_text(ids, mask))
    assert loaded.tokenizer.to_str() == model.tokenizer.to_str()


def test_from_pretrained_rejects_non_model_dir(tmp_path) -> None:
    from stair_es.errors import ModelError

    with pytest.raises(ModelError, match="not a STAIR model directory"):
        StairModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match="model_type"):
        StairModel.from_pretrained(tmp_path)


def test_config_json_round_trip() -> None:
    cfg = StairConfig.small(1100, [0, 1, 2], image_size=32, patch_size=8, hidden_size=32, layers=1, heads=2)
    assert StairConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_towers_from_local_checkpoints(tmp_path) -> None:
    """Dense-to-sparse start: a local CLIP vision + BERT checkpoint become the towers (no hub)."""
    from transformers import BertConfig, BertModel, CLIPVisionConfig, CLIPVisionModel

    from stair_es.model.pretrained import model_from_towers

    vision = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        )
    )
    vision.save_pretrained(tmp_path / "clip")
    tok = build_wordpiece_tokenizer(["red circle"], vocab_size=1100)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "vocab.txt").write_text("\n".join(t for t, _ in vocab) + "\n")
    BertModel(
        BertConfig(
            vocab_size=1100,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        ),
        add_pooling_layer=False,
    ).save_pretrained(tmp_path / "bert")
    model = model_from_towers(tmp_path / "clip", tmp_path / "bert").eval()
    assert model.config.vocab_size == 1100 and model.preprocessor_config["mean"][0] != 0.5
    reference = CLIPVisionModel.from_pretrained(tmp_path / "clip")
    for (name, p), (_, q) in zip(
        model.vision_tower.named_parameters(), reference.named_parameters(), strict=True
    ):
        assert torch.equal(p, q), name
    model.save_pretrained(tmp_path / "sparse")
    reloaded = StairModel.from_pretrained(tmp_path / "sparse")
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(reloaded.encode_image(pixels), model.encode_image(pixels))


def test_conv_stem_replaces_patchify_and_round_trips(tmp_path) -> None:
    from stair_es.model.modeling import ConvStem
    from stair_es.model.testing import tiny_model

    conv = tiny_model(vision_stem="conv", patch_size=8)
    stem = conv._vision_core().embeddings.patch_embedding
    assert isinstance(stem, ConvStem)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in stem.body) == 4  # 3 stride-2 convs (8 = 2^3) + 1x1
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert stem(pixels).shape == (2, 32, 4, 4)  # the patchify output shape: [B, hidden, grid, grid]
        reference = conv.encode_image(pixels)
    conv.save_pretrained(tmp_path / "conv")
    loaded = StairModel.from_pretrained(tmp_path / "conv")
    assert loaded.config.vision_stem == "conv"
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(pixels), reference)


def test_conv_stem_keeps_activation_scale_and_rejects_bad_patch_sizes() -> None:
    from stair_es.errors import ModelError
    from stair_es.model.modeling import ConvStem

    torch.manual_seed(0)
    out = ConvStem(3, 64, 16)(torch.randn(8, 3, 64, 64))
    # torch's default conv init shrinks activations ~3x per layer (std ~0.02 after 5 layers);
    # He init keeps them near the input's scale so they are not drowned by the position embeddings
    assert 0.3 < float(out.std()) < 3.0
    with pytest.raises(ModelError, match="power-of-two"):
        ConvStem(3, 64, 12)
