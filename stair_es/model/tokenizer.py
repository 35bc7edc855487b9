"""A BERT-style WordPiece tokenizer built locally (no hub), and the ids the model must never emit.

The vocabulary is deterministic: special tokens, ``[unusedN]`` slots, single characters (plain and
``##``-continuation, so every word can be spelled), common suffix pieces, then whole words, most frequent
first in the training texts, then a list of common English words, so ordinary queries stay readable.
Only ``tokenizers`` is needed: the runtime loads the same ``tokenizer.json`` without torch.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from stair_es.errors import InvalidArgument
from stair_es.model.english_words import ENGLISH_WORDS

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
SUFFIX_PIECES = (
    "##s",
    "##es",
    "##ed",
    "##ing",
    "##er",
    "##est",
    "##ly",
    "##y",
    "##al",
    "##ion",
    "##ness",
    "##ful",
)

# Function words that every caption has: left active, the image side learns to fire them for every
# image (long posting lists, no meaning). Configurable per model through StairConfig.stop_words.
DEFAULT_STOP_WORDS: tuple[str, ...] = tuple(
    """a an the and or but if of on at in to for with by from into onto upon as is are was were be been
    being am has have had do does did this that these those it its there here who whom which what while
    than then so such very just also s t""".split()
)


def build_wordpiece_tokenizer(
    texts: Iterable[str] = (),
    vocab_size: int | None = None,
    extra_words: Sequence[str] = ENGLISH_WORDS,
    num_unused: int = 100,
    max_length: int = 32,
) -> Tokenizer:
    """Build the tokenizer. ``vocab_size`` caps the vocabulary (words beyond it are spelled in pieces);
    None keeps every word. Words from ``texts`` come first, so a small cap still covers the data."""
    vocab: dict[str, int] = {}

    def add(token: str) -> None:
        if token not in vocab and (vocab_size is None or len(vocab) < vocab_size):
            vocab[token] = len(vocab)

    for token in SPECIAL_TOKENS:
        add(token)
    for i in range(num_unused):
        add(f"[unused{i}]")
    chars = string.ascii_lowercase + string.digits
    for ch in chars + string.punctuation:
        add(ch)
    for ch in chars:
        add("##" + ch)
    for piece in SUFFIX_PIECES:
        add(piece)
    pre = pre_tokenizers.BertPreTokenizer()
    norm = normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)
    counts: Counter[str] = Counter()
    for text in texts:
        for word, _ in pre.pre_tokenize_str(norm.normalize_str(text)):
            counts[word] += 1
    for word, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        add(word)
    for word in extra_words:
        add(word.lower())
    if len(vocab) < len(SPECIAL_TOKENS) + num_unused + len(chars):
        raise InvalidArgument(f"vocab_size={vocab_size} is too small to spell words (need > {len(vocab)})")
    return _assemble(vocab, max_length)


def tokenizer_from_vocab_file(vocab_txt: str | Path, max_length: int = 32) -> Tokenizer:
    """A BERT ``vocab.txt`` (one token per line) -> the same tokenizer layout as above."""
    tokens = Path(vocab_txt).read_text(encoding="utf-8").splitlines()
    return _assemble({tok: i for i, tok in enumerate(tokens)}, max_length)


def _assemble(vocab: dict[str, int], max_length: int) -> Tokenizer:
    for token in SPECIAL_TOKENS:
        if token not in vocab:
            raise InvalidArgument(f"vocabulary lacks {token}")
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=UNK, max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
        special_tokens=[(CLS, vocab[CLS]), (SEP, vocab[SEP])],
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def zeroed_token_ids(tokenizer: Tokenizer, stop_words: Iterable[str] = DEFAULT_STOP_WORDS) -> list[int]:
    """Ids forced to weight 0: special tokens, ``[unused*]``, pure punctuation, and the stop words."""
    stops = {w.lower() for w in stop_words}
    zeroed = []
    for token, idx in tokenizer.get_vocab().items():
        bare = token[2:] if token.startswith("##") else token
        if (
            (token.startswith("[") and token.endswith("]"))
            or (bare and all(ch in string.punctuation for ch in bare))
            or token in stops
        ):
            zeroed.append(idx)
    return sorted(zeroed)
