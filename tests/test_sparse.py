from __future__ import annotations

import numpy as np
import pytest

from stair_es.sparse import (
    SparseVector,
    decode_feature_name,
    encode_feature_name,
    storable_mask,
    truncate_9bit,
)


@pytest.mark.parametrize("token", ["dog", ".", "u.s.", "100%", "%2E", "##s", "[CLS]", "a.b%c", "é.ü"])
def test_feature_names_round_trip_without_dots(token: str) -> None:
    encoded = encode_feature_name(token)
    assert "." not in encoded
    assert decode_feature_name(encoded) == token


def test_plain_tokens_stay_readable() -> None:
    assert encode_feature_name("dog") == "dog"
    assert encode_feature_name("##ing") == "##ing"


def test_truncate_9bit_matches_lucene_examples() -> None:
    # values with short mantissas survive, others lose < 2^-8, always toward zero
    assert truncate_9bit(np.float32(1.0)) == np.float32(1.0)
    assert truncate_9bit(np.float32(64.0)) == np.float32(64.0)
    w = np.random.default_rng(0).uniform(1e-4, 10, size=1000).astype(np.float32)
    t = truncate_9bit(w)
    assert np.all(t <= w)
    assert np.max((w - t) / w) < 2**-8
    assert np.any(t < w)


def test_storable_mask_drops_what_the_engine_refuses() -> None:
    w = np.array([0.0, -1.0, np.nan, np.inf, 1e-40, 0.5], dtype=np.float32)
    assert storable_mask(w).tolist() == [False, False, False, False, False, True]


def test_from_arrays_sorts_and_dedups_by_max() -> None:
    v = SparseVector.from_arrays(["a", "b", "a", "c"], [0.5, 2.0, 1.5, 0.0])
    assert v.tokens == ("b", "a")
    assert v.weights.tolist() == [2.0, 1.5]


def test_prune_top_k_min_weight_and_mass() -> None:
    v = SparseVector.from_dict({"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0})
    assert v.prune(top_k=2).tokens == ("a", "b")
    assert v.prune(min_weight=2.0).tokens == ("a", "b", "c")
    assert v.prune(mass=0.7).tokens == ("a", "b")  # 7/10 reached after two tokens
    assert v.prune(mass=0.71).tokens == ("a", "b", "c")
    assert v.prune(mass=1.0).tokens == ("a", "b", "c", "d")
    assert v.prune(top_k=0).tokens == ()
    with pytest.raises(ValueError):
        v.prune(mass=1.5)


def test_dot_and_contributions() -> None:
    q = SparseVector.from_dict({"a": 2.0, "b": 1.0, "z": 5.0})
    d = SparseVector.from_dict({"a": 0.5, "b": 3.0, "c": 1.0})
    assert q.dot(d) == pytest.approx(4.0)
    rows = q.contributions(d)
    assert [r[0] for r in rows] == ["b", "a"]
    assert sum(r[3] for r in rows) == pytest.approx(q.dot(d))


def test_features_view_escapes_and_filters() -> None:
    v = SparseVector.from_dict({"u.s.": 1.0, "x": -2.0})
    assert v.to_features() == {"u%2Es%2E": 1.0}
    assert SparseVector.from_features(v.to_features()).tokens == ("u.s.",)


def test_shifted_weights_keep_the_same_nine_bits_in_fewer_frequency_bits() -> None:
    from stair_es.sparse import min_storable_weight, shift_weights, unshift_weight

    rng = np.random.default_rng(3)
    w = rng.lognormal(-1.0, 1.5, 5000).astype(np.float32)
    w = w[w >= min_storable_weight(112)]
    shifted = shift_weights(w, 112)
    # what the engine keeps of a shifted weight is exactly the shifted 9-bit weight
    assert np.array_equal(truncate_9bit(shifted), shift_weights(truncate_9bit(w), 112))
    assert storable_mask(shifted).all()
    assert [unshift_weight(float(s), 112) for s in truncate_9bit(shifted)] == truncate_9bit(w).tolist()
    # the term frequency the engine writes is the float's top 16 bits: ~16 bits plain, ~12 shifted
    freq = lambda x: (np.asarray(x, np.float32).view(np.uint32) >> 15).max()  # noqa: E731
    assert int(freq(w[w < 4])).bit_length() == 16
    assert int(freq(shift_weights(w[w < 4], 112))).bit_length() <= 13
    assert min_storable_weight(0) == float(np.finfo(np.float32).tiny)
    assert not storable_mask(shift_weights(np.array([min_storable_weight(112) / 2], np.float32), 112)).any()


def test_drop_keeps_order_and_ids() -> None:
    v = SparseVector.from_arrays(["a", "b", "c", "d"], [4.0, 3.0, 2.0, 1.0], [10, 11, 12, 13])
    rest = v.drop(["b", "d", "zz"])
    assert rest.tokens == ("a", "c") and rest.weights.tolist() == [4.0, 2.0] and rest.ids.tolist() == [10, 12]
