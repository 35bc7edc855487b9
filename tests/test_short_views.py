"""Short views of captions for training: wording, positives, the multi-positive loss, the trainer."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from stair_es.data import SyntheticConfig, generate_synthetic, read_jsonl  # noqa: E402
from stair_es.model.dense import DenseClipModel  # noqa: E402
from stair_es.model.testing import tiny_model  # noqa: E402
from stair_es.model.tokenizer import DEFAULT_STOP_WORDS  # noqa: E402
from stair_es.training.batches import load_pairs  # noqa: E402
from stair_es.training.losses import contrastive_loss, multi_positive_loss  # noqa: E402
from stair_es.training.trainer import TrainConfig, Trainer  # noqa: E402
from stair_es.training.views import ShortViews, plural_stem  # noqa: E402

CAPTIONS = [
    "two big red circles on the left on a white background",
    "one small red circle at the top on a black background",
    "three big blue stars in the center on a white background",
    "one big yellow cross on the right on a gray background",
]


def test_plural_stem_meets_the_singular() -> None:
    for plural, singular in [
        ("circles", "circle"),
        ("crosses", "cross"),
        ("stars", "star"),
        ("berries", "berry"),
    ]:
        assert plural_stem(plural) == singular
    for word in ("cross", "red", "glass", "bus", "is", "gray"):
        assert plural_stem(word) == word


def test_views_use_caption_words_in_order_and_positives_follow_the_words() -> None:
    views = ShortViews(CAPTIONS, DEFAULT_STOP_WORDS, ["background"])
    for step in range(50):
        texts, positives = views.sample(range(len(CAPTIONS)), seed=1, step=step)
        assert positives.shape == (4, 4) and positives.diagonal().all()
        for v, text in enumerate(texts):
            words = text.split()
            words = words[1:] if words[0] == "a" and not CAPTIONS[v].startswith("a ") else words
            rest = iter(CAPTIONS[v].split())
            assert all(w in rest for w in words), (text, CAPTIONS[v])  # a subsequence of the caption
            content = {plural_stem(w) for w in words if w not in DEFAULT_STOP_WORDS and w != "background"}
            for j, caption_j in enumerate(CAPTIONS):
                holds = content <= {plural_stem(w) for w in caption_j.split()}
                assert positives[v, j] == (holds or v == j), (text, caption_j)
    again, _ = views.sample(range(4), seed=1, step=7)
    assert again == views.sample(range(4), seed=1, step=7)[0]
    assert any(views.sample(range(4), seed=1, step=s)[0] != again for s in range(8, 12))


def test_red_circles_view_is_answered_by_both_red_circle_images() -> None:
    views = ShortViews(CAPTIONS, DEFAULT_STOP_WORDS, ["background"])
    seen = False
    for step in range(400):
        texts, positives = views.sample([0, 1, 2, 3], seed=0, step=step)
        stripped = texts[0].removeprefix("a ")
        if stripped == "red circles":
            assert positives[0].tolist() == [True, True, False, False]
            seen = True
    assert seen


def test_multi_positive_loss() -> None:
    scores = torch.tensor([[2.0, 0.5, 0.1], [0.3, 1.5, 0.2], [0.0, 0.4, 3.0]])
    identity = torch.eye(3, dtype=torch.bool)
    assert torch.allclose(multi_positive_loss(scores, identity), contrastive_loss(scores))
    shared = identity.clone()
    shared[0, 1] = True  # view 0 is answered by images 0 and 1
    ranked_right = torch.tensor([[2.0, 2.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]])
    ranked_wrong = torch.tensor([[2.0, 0.0, 2.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]])
    assert multi_positive_loss(ranked_right, shared) < multi_positive_loss(ranked_wrong, shared)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> list:
    root = tmp_path_factory.mktemp("views")
    manifests = generate_synthetic(
        root, SyntheticConfig(num_images=40, seed=2, test_fraction=0.0, image_size=32)
    )
    return read_jsonl(manifests["train"])


@pytest.mark.parametrize("stage", ["1", "2", "3"])
def test_trainer_logs_the_short_view_loss(pairs, stage: str) -> None:
    model = tiny_model(seed=0, max_text_length=24)
    data = load_pairs(pairs, model.tokenizer, model.preprocessor_config, model.config.max_text_length)
    config = TrainConfig(stage=stage, steps=2, batch_size=8, short_view_weight=1.0, log_every=1)
    trainer = Trainer(model, config, data)
    parts = trainer.train_step()
    assert parts["short_views"] > 0 and parts["total"] > parts["contrastive"]
    assert "active_view" in parts
    without = Trainer(
        tiny_model(seed=0, max_text_length=24), TrainConfig(stage=stage, steps=2, batch_size=8), data
    )
    assert "short_views" not in without.train_step()


def test_dense_baseline_trains_on_the_same_views_with_a_given_tokenizer(pairs) -> None:
    stair = tiny_model(seed=0, max_text_length=24)
    data = load_pairs(pairs, stair.tokenizer, stair.preprocessor_config, stair.config.max_text_length)
    clip = DenseClipModel(stair.config, embed_dim=16)
    config = TrainConfig(stage="dense", steps=1, batch_size=8, short_view_weight=1.0)
    with pytest.raises(Exception, match="tokenizer"):
        Trainer(clip, config, data)
    parts = Trainer(clip, config, data, tokenizer=stair.tokenizer).train_step()
    assert parts["short_views"] > 0


def test_negative_short_view_weight_is_refused(pairs) -> None:
    model = tiny_model(seed=0, max_text_length=24)
    data = load_pairs(pairs, model.tokenizer, model.preprocessor_config, model.config.max_text_length)
    with pytest.raises(Exception, match="short_view_weight"):
        Trainer(model, TrainConfig(stage="3", steps=1, batch_size=8, short_view_weight=-1), data)
