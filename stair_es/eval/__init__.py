"""Retrieval evaluation: Recall@K (text->image, image->text) and zero-shot accuracy, computed in
memory (exact numpy sparse dot products) and through the engine, side by side.

Typical use::

    from stair_es.eval import load_retrieval_set, evaluate_retrieval, EngineTarget
    data = load_retrieval_set("dataset_flickr30k.json", image_root="flickr30k-images", split="test")
    report = evaluate_retrieval(data, encoder, engine=EngineTarget(backend))
    print(report.to_dict()["directions"]["text_to_image"])

Nothing here imports torch.
"""

from stair_es.engine.modes import EVAL_MODES
from stair_es.eval.datasets import (
    DEFAULT_TEMPLATE,
    LabelledSet,
    RetrievalSet,
    load_labelled_set,
    load_retrieval_set,
    looks_labelled,
    read_class_names,
)
from stair_es.eval.metrics import DEFAULT_KS, accuracy, recall_at_k, top1_agreement
from stair_es.eval.runner import (
    Direction,
    EngineTarget,
    EvalReport,
    average_vectors,
    evaluate_retrieval,
    evaluate_zeroshot,
    memory_rankings,
)
from stair_es.eval.scoring import SparseMatrix, top_k

__all__ = [
    "DEFAULT_KS",
    "DEFAULT_TEMPLATE",
    "EVAL_MODES",
    "Direction",
    "EngineTarget",
    "EvalReport",
    "LabelledSet",
    "RetrievalSet",
    "SparseMatrix",
    "accuracy",
    "average_vectors",
    "evaluate_retrieval",
    "evaluate_zeroshot",
    "load_labelled_set",
    "load_retrieval_set",
    "looks_labelled",
    "memory_rankings",
    "read_class_names",
    "recall_at_k",
    "top1_agreement",
    "top_k",
]
