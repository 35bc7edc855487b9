"""A CLIP-style byte-level BPE tokenizer trained locally with `tokenizers` (no hub).

Same layout as the ``tokenizer.json`` of Hugging Face CLIP folders (NFC + lower-case normaliser,
CLIP's word regex, byte-level alphabet, ``</w>`` end-of-word suffix, ``<|startoftext|> ...
<|endoftext|>``), so a dense CLIP trained here is read by exactly the code that reads a real one.
Every byte exists both inside and at the end of a word, so no text ever maps to the unknown token
(which is ``<|endoftext|>`` in CLIP and would be mistaken for the end of the text).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import cast

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
SUFFIX = "</w>"
WORD_PATTERN = (
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)


def build_clip_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 2000, max_length: int = 77) -> Tokenizer:
    """Train a BPE on ``texts``; ids 0/1 are ``<|startoftext|>``/``<|endoftext|>``."""
    normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    draft = Tokenizer(models.BPE(unk_token=EOS, end_of_word_suffix=SUFFIX, continuing_subword_prefix=""))
    draft.normalizer, draft.pre_tokenizer = normalizer, pre_tokenizer
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS],
        end_of_word_suffix=SUFFIX,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    draft.train_from_iterator(list(texts), trainer)
    trained = json.loads(draft.to_str())["model"]
    vocab: dict[str, int] = dict(trained["vocab"])
    for char in alphabet:  # every byte, also as the last piece of a word
        for token in (char, char + SUFFIX):
            vocab.setdefault(token, len(vocab))
    # each merge is a pair of pieces ("a b" in older tokenizers files, ["a", "b"] in newer ones)
    merges = cast(
        list[tuple[str, str]],
        [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in trained["merges"]],
    )
    tokenizer = Tokenizer(
        models.BPE(vocab, merges, unk_token=EOS, end_of_word_suffix=SUFFIX, continuing_subword_prefix="")
    )
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    tokenizer.add_special_tokens([BOS, EOS])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer
