"""SQuAD post-processing (C++ n-best decoding) and the official evaluation metrics."""

from pybert.squad.evaluate import (
    evaluate_v1,
    evaluate_v2,
    precision_recall_curves,
    run_squad_metrics,
)
from pybert.squad.postprocess import (
    SquadFeatureArrays,
    get_final_text,
    postprocess_output,
    write_predictions,
)

__all__ = [
    "SquadFeatureArrays",
    "evaluate_v1",
    "evaluate_v2",
    "precision_recall_curves",
    "run_squad_metrics",
    "get_final_text",
    "postprocess_output",
    "write_predictions",
]
