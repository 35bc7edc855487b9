"""Short text views of captions ("red circles", "three crosses") and which images answer them.

Why: people type two or three words, not captions. A text tower trained on full captions only
expands a short query into the words of the captions it has seen most ("two red circles" ->
``cyan``, ``square``), and nothing teaches the image side that "yellow triangles" must rank a
yellow *triangle* above a yellow star. A short view is a random subset of a caption's content
words, kept in caption order with the function words that lead into them ("red circles on the
left"); every image of the batch whose caption holds all of the view's words is a positive for
it (multi-positive contrastive loss, :func:`stair_es.training.losses.multi_positive_loss`).

Generic: words are compared after a light plural stemmer, so "circles" is answered by a caption
with "circle" too, and nothing here knows the synthetic grammar. Views are a pure function of
(seed, step, caption), so resumed runs see the same views.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

# How many content words a view keeps (probabilities for 1, 2, 3, 4 words): mostly two or three,
# as people type.
VIEW_SIZES = (0.2, 0.4, 0.3, 0.1)
SPAN_PROBABILITY = 0.5  # consecutive content words (a phrase) rather than any subset
ARTICLE_PROBABILITY = 0.3  # "a red circle": queries often start with an article


def plural_stem(word: str) -> str:
    """``circles`` -> ``circle``, ``crosses`` -> ``cross``, ``berries`` -> ``berry`` (nouns only
    need to meet their singular; a full stemmer would merge words a caption keeps apart)."""
    w = word.lower()
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if w.endswith(("sses", "shes", "ches", "xes", "zes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


class ShortViews:
    """Samples one short view per caption of a batch, and the batch's positives for each view.

    ``function_words`` (a, the, on ...) never become a view on their own but lead into a chosen
    word; ``zeroed_words`` (content words the model never emits, e.g. "background" in a set where
    every caption has it) follow the word before them ("white background").
    """

    def __init__(
        self,
        captions: Sequence[str],
        function_words: Iterable[str],
        zeroed_words: Iterable[str] = (),
        sizes: Sequence[float] = VIEW_SIZES,
    ) -> None:
        self.function_words = {w.lower() for w in function_words}
        self.zeroed_words = {w.lower() for w in zeroed_words} - self.function_words
        self.sizes = np.asarray(sizes, dtype=np.float64) / float(np.sum(sizes))
        self.skipped = self.function_words | self.zeroed_words
        self.words = [caption.lower().split() for caption in captions]
        self.stems = [frozenset(plural_stem(w) for w in self._content(words)) for words in self.words]

    def _content(self, words: Sequence[str]) -> list[str]:
        return [w for w in words if w not in self.skipped]

    def view(self, caption_index: int, rng: np.random.Generator) -> tuple[str, frozenset[str]]:
        """(view text, its content stems) for one caption."""
        words = self.words[caption_index]
        content = [i for i, w in enumerate(words) if w not in self.skipped]
        if not content:
            return " ".join(words), frozenset()
        size = min(len(content), 1 + int(rng.choice(len(self.sizes), p=self.sizes)))
        if rng.random() < SPAN_PROBABILITY:  # a phrase: consecutive content words ("big red circles")
            start = int(rng.integers(len(content) - size + 1))
            chosen = set(content[start : start + size])
        else:  # any words of the caption ("three crosses")
            chosen = set(rng.choice(content, size=size, replace=False).tolist())
        kept = []
        for i, word in enumerate(words):
            if i in chosen:
                kept.append(word)
            elif word in self.function_words:
                following = next(
                    (j for j in range(i + 1, len(words)) if words[j] not in self.function_words), None
                )
                if following in chosen and kept:  # "... red circles on the left", not a leading "on the"
                    kept.append(word)
            elif word in self.zeroed_words and kept and kept[-1] == words[i - 1] and (i - 1) in chosen:
                kept.append(word)
        if rng.random() < ARTICLE_PROBABILITY:
            kept.insert(0, "a")
        return " ".join(kept), frozenset(plural_stem(words[i]) for i in chosen)

    def sample(self, indices: Sequence[int], seed: int, step: int) -> tuple[list[str], np.ndarray]:
        """Views of ``indices``' captions and ``positives[v, j]``: caption ``indices[j]`` holds every
        word of view ``v`` (its own caption always does)."""
        rng = np.random.default_rng([seed, step, 11])
        texts, view_stems = [], []
        for index in indices:
            text, stems = self.view(int(index), rng)
            texts.append(text)
            view_stems.append(stems)
        batch_stems = [self.stems[int(i)] for i in indices]
        positives = np.array([[stems <= have for have in batch_stems] for stems in view_stems], dtype=bool)
        np.fill_diagonal(positives, True)
        return texts, positives
