"""The official SQuAD evaluation metrics, v1.1 and v2.0.

v1.1: exact match and F1 over the gold answers (max over answers), answers
normalized by lower-casing and removing punctuation, articles and extra
whitespace: "The  Eiffel tower!" -> "eiffel tower". Unanswered questions
score 0 and count in the total.

v2.0: the same normalization; unanswerable questions have the gold answer
""; F1 is 1 when both sides are empty; HasAns/NoAns splits; a no-answer
probability file (null odds) gives best thresholds; questions without a
prediction are left out (logged), as the official script does.
"""

from __future__ import annotations

import collections
import logging
import re
import string

logger = logging.getLogger("pybert.squad")

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", s).split())


def _tokens(s: str) -> list[str]:
    return normalize_answer(s).split() if s else []


def _f1_v1(prediction: str, ground_truth: str) -> float:
    pred = normalize_answer(prediction).split()
    gold = normalize_answer(ground_truth).split()
    same = sum((collections.Counter(pred) & collections.Counter(gold)).values())
    if same == 0:
        return 0
    precision = 1.0 * same / len(pred)
    recall = 1.0 * same / len(gold)
    return (2 * precision * recall) / (precision + recall)


def _f1_v2(gold: str, pred: str) -> float:
    gold_toks, pred_toks = _tokens(gold), _tokens(pred)
    if not gold_toks or not pred_toks:
        return int(gold_toks == pred_toks)  # no-answer: 1 if both agree
    same = sum((collections.Counter(gold_toks) & collections.Counter(pred_toks)).values())
    if same == 0:
        return 0
    precision = 1.0 * same / len(pred_toks)
    recall = 1.0 * same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def _questions(dataset):
    """Accepts the whole SQuAD JSON object or its "data" list."""
    articles = dataset["data"] if isinstance(dataset, dict) else dataset
    for article in articles:
        for paragraph in article["paragraphs"]:
            yield from paragraph["qas"]


def evaluate_v1(dataset, predictions: dict) -> dict:
    """Official v1.1 metrics: {"exact_match": ..., "f1": ...} in percent."""
    exact, f1, total = _v1_sums(dataset, predictions)
    return {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total}


def _v1_sums(dataset, predictions: dict) -> tuple[float, float, int]:
    exact = f1 = 0.0
    total = 0
    for qa in _questions(dataset):
        total += 1
        if qa["id"] not in predictions:
            logger.warning("Unanswered question %s will receive score 0.", qa["id"])
            continue
        truths = [a["text"] for a in qa["answers"]]
        if not truths:
            raise ValueError(
                f"question {qa['id']} has no answers: a SQuAD v2.0 file? (use version 2.0)"
            )
        pred = predictions[qa["id"]]
        exact += max(int(normalize_answer(pred) == normalize_answer(t)) for t in truths)
        f1 += max(_f1_v1(pred, t) for t in truths)
    if total == 0:
        raise ValueError("the dataset has no questions")
    return exact, f1, total


def _eval_dict(exact: dict, f1: dict, qids=None) -> collections.OrderedDict:
    qids = list(exact) if qids is None else qids
    total = len(qids)
    return collections.OrderedDict(
        [
            ("exact", 100.0 * sum(exact[k] for k in qids) / total),
            ("f1", 100.0 * sum(f1[k] for k in qids) / total),
            ("total", total),
        ]
    )


def _best_threshold(predictions, scores, na_probs, has_ans):
    # questions without a prediction are left out, as from every other number
    score = best = sum(1 for k in scores if not has_ans[k])
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if has_ans[qid]:
            diff = scores[qid]
        else:
            diff = -1 if predictions[qid] else 0
        score += diff
        if score > best:
            best = score
            best_thresh = na_probs[qid]
    return 100.0 * best / len(scores), best_thresh


def evaluate_v2(
    dataset, predictions: dict, na_probs: dict | None = None, na_prob_thresh: float = 1.0
) -> collections.OrderedDict:
    """Official v2.0 metrics: exact, f1, total, HasAns_*, NoAns_* and, with
    na_probs (e.g. null_odds.json), best_exact/best_f1 and their thresholds."""
    result, _ = _evaluate_v2(dataset, predictions, na_probs, na_prob_thresh)
    return result


def _evaluate_v2(dataset, predictions, na_probs, na_prob_thresh):
    """(the official result, (has_ans, exact_raw, f1_raw, probs)) for the seed's extras."""
    questions = list(_questions(dataset))
    has_ans = {qa["id"]: bool(qa["answers"]) for qa in questions}
    probs = na_probs if na_probs is not None else {k: 0.0 for k in predictions}
    exact_raw, f1_raw = {}, {}
    for qa in questions:
        qid = qa["id"]
        gold = [a["text"] for a in qa["answers"] if normalize_answer(a["text"])] or [""]
        if qid not in predictions:
            logger.error("Missing prediction for %s", qid)
            continue
        pred = predictions[qid]
        exact_raw[qid] = max(int(normalize_answer(a) == normalize_answer(pred)) for a in gold)
        f1_raw[qid] = max(_f1_v2(a, pred) for a in gold)
    if not exact_raw:
        raise ValueError("no question of the dataset has a prediction")
    missing_probs = [k for k in exact_raw if k not in probs]
    if missing_probs:
        raise ValueError(f"no null-answer probability for question {missing_probs[0]}")

    def thresholded(scores):
        return {
            k: float(not has_ans[k]) if probs[k] > na_prob_thresh else s for k, s in scores.items()
        }

    exact, f1 = thresholded(exact_raw), thresholded(f1_raw)
    result = _eval_dict(exact, f1)
    has = [k for k in exact if has_ans[k]]
    no = [k for k in exact if not has_ans[k]]
    if has:
        for key, value in _eval_dict(exact, f1, has).items():
            result[f"HasAns_{key}"] = value
    if no:
        for key, value in _eval_dict(exact, f1, no).items():
            result[f"NoAns_{key}"] = value
    if na_probs is not None:
        result["best_exact"], result["best_exact_thresh"] = _best_threshold(
            predictions, exact_raw, probs, has_ans
        )
        result["best_f1"], result["best_f1_thresh"] = _best_threshold(
            predictions, f1_raw, probs, has_ans
        )
    return result, (has_ans, exact_raw, f1_raw, probs)


def precision_recall_curve(scores: dict, probs: dict, has_ans: dict, n_answerable: int):
    """(average precision in percent, precisions, recalls) of answering the questions in the
    order of their no-answer probability, as the official v2.0 script computes it: tied
    probabilities make one point, a question counts its score when it has an answer. Only
    questions with a score (a prediction) are ranked; recall is over `n_answerable`."""
    order = sorted((k for k in probs if k in has_ans and k in scores), key=lambda k: probs[k])
    true_pos = area = 0.0
    precisions, recalls = [1.0], [0.0]
    for i, qid in enumerate(order):
        if has_ans[qid]:
            true_pos += scores[qid]
        if i + 1 == len(order) or probs[qid] != probs[order[i + 1]]:
            precision, recall = true_pos / (i + 1), true_pos / n_answerable
            area += precision * (recall - recalls[-1])
            precisions.append(precision)
            recalls.append(recall)
    return 100.0 * area, precisions, recalls


def precision_recall_curves(dataset, predictions: dict, na_probs: dict) -> dict:
    """{"exact" | "f1" | "oracle": (average precision, precisions, recalls)}: the official
    v2.0 script's precision/recall analysis (its --out-image-dir), over the questions with a
    prediction (as every other number here and the seed's copy of the script); {} when none
    of them has an answer."""
    return _curves(_evaluate_v2(dataset, predictions, na_probs, 1.0)[1])


def evaluate_v2_with_curves(dataset, predictions: dict, na_probs: dict,
                            na_prob_thresh: float = 1.0) -> tuple[collections.OrderedDict, dict]:
    """(evaluate_v2's result, precision_recall_curves'), the questions scored once."""
    result, details = _evaluate_v2(dataset, predictions, na_probs, na_prob_thresh)
    return result, _curves(details)


def _curves(details) -> dict:
    has_ans, exact_raw, f1_raw, probs = details
    has_ans = {k: has_ans[k] for k in exact_raw}
    n_answerable = sum(has_ans.values())
    if not n_answerable:
        return {}
    oracle = {k: float(v) for k, v in has_ans.items()}
    return {name: precision_recall_curve(scores, probs, has_ans, n_answerable)
            for name, scores in (("exact", exact_raw), ("f1", f1_raw), ("oracle", oracle))}


def run_squad_metrics(dataset, predictions: dict, null_odds: dict | None, v2: bool) -> dict:
    """The metrics run_squad --mode=eval writes to eval_metrics.json, with the seed's keys
    and scales (its copies of the evaluation scripts).

    v1.1: {"exact_match", "final_f1"} as fractions (0..1). v2.0: the official
    exact, f1, total and HasAns_/NoAns_ splits (percent), the best thresholds
    as final_exact(_thresh) / final_f1(_thresh), and the average precisions
    pr_exact_ap, pr_f1_ap, pr_oracle_ap. Only questions with a prediction count
    for v2.0.
    """
    if not v2:
        exact, f1, total = _v1_sums(dataset, predictions)
        return {"exact_match": exact / total, "final_f1": f1 / total}
    probs = null_odds if null_odds is not None else {k: 0.0 for k in predictions}
    predicted = {"data": [{"paragraphs": [{"qas": [qa]}]} for qa in _questions(dataset)
                          if qa["id"] in predictions]}
    official, (has_ans, exact_raw, f1_raw, probs) = _evaluate_v2(predicted, predictions, probs,
                                                                 1.0)
    result = collections.OrderedDict(
        (k, v) for k, v in official.items() if not k.startswith("best_"))
    for key in ("exact", "exact_thresh", "f1", "f1_thresh"):
        result[f"final_{key}"] = official[f"best_{key}"]
    for name, (ap, _, _) in _curves((has_ans, exact_raw, f1_raw, probs)).items():
        result[f"pr_{name}_ap"] = ap
    return result
