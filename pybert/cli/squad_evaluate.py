"""pybert-squad-evaluate: the official SQuAD v1.1 / v2.0 metrics for a prediction file.

  pybert-squad-evaluate dev-v1.1.json predictions.json
  pybert-squad-evaluate dev-v2.0.json predictions.json --na_prob_file null_odds.json
  pybert-squad-evaluate dev-v2.0.json predictions.json -n null_odds.json -p out_images

Prints the metrics as JSON, like the official scripts. --version defaults to
the data file's own "version" field. With --na_prob_file and --out_image_dir
(v2.0), the official script's precision/recall analysis: pr_exact_ap, pr_f1_ap
and pr_oracle_ap join the metrics, and its plots are written there
(pr_exact.png, pr_f1.png, pr_oracle.png, na_prob_hist_hasAns.png,
na_prob_hist_noAns.png; matplotlib needed).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from pybert.squad.evaluate import evaluate_v1, evaluate_v2, evaluate_v2_with_curves


def _load_json(path: str, what: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise SystemExit(f"pybert-squad-evaluate: error: {what} not found: {path}") from None
    except OSError as e:  # a directory, no permission
        raise SystemExit(f"pybert-squad-evaluate: error: {what} {path}: cannot read it "
                         f"({e.strerror or e})") from None
    except RecursionError:
        raise SystemExit(f"pybert-squad-evaluate: error: {what} {path}: JSON nested too "
                         "deeply") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SystemExit(
            f"pybert-squad-evaluate: error: {what} {path} is not valid JSON: {e}"
        ) from None


def _check_values(mapping: dict, kind, path: str, what: str) -> None:
    for key, value in mapping.items():
        # json reads NaN and Infinity: numbers no ranking or histogram can use
        if (not isinstance(value, kind) or isinstance(value, bool)
                or (isinstance(value, float) and not math.isfinite(value))):
            raise SystemExit(f"pybert-squad-evaluate: error: {path}: the value for {key!r} is "
                             f"{json.dumps(value)[:50]}, not {what}")


_TITLES = {"exact": "Precision-Recall curve for Exact Match score",
           "f1": "Precision-Recall curve for F1 score",
           "oracle": "Oracle Precision-Recall curve (binary task of HasAns vs. NoAns)"}


def _plot(image_dir: str, curves: dict, dataset, predictions: dict, na_probs: dict) -> None:
    """The official v2.0 script's plots: a precision/recall step curve per score and the
    no-answer score histograms of the answerable and unanswerable questions. Each file is
    complete under a temporary name, then renamed."""
    import os

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("--out_image_dir needs matplotlib (pip install matplotlib)") from None
    from pybert.data.records import write_then_commit
    from pybert.squad.evaluate import _questions

    try:
        os.makedirs(image_dir, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out_image_dir {image_dir}: cannot create it "
                         f"({e.strerror or e})") from None

    def save(fig, name):
        path = os.path.join(image_dir, name)
        try:
            write_then_commit(path + ".tmp", path,
                              lambda: fig.savefig(path + ".tmp", format="png"))
        except OSError as e:
            raise ValueError(f"--out_image_dir {image_dir}: cannot write {name} "
                             f"({e.strerror or e})") from None
        finally:
            plt.close(fig)

    for name, (_, precisions, recalls) in curves.items():
        fig, ax = plt.subplots()
        ax.step(recalls, precisions, color="b", alpha=0.2, where="post")
        ax.fill_between(recalls, precisions, step="post", alpha=0.2, color="b")
        ax.set(xlabel="Recall", ylabel="Precision", xlim=(0.0, 1.05), ylim=(0.0, 1.05),
               title=_TITLES[name])
        save(fig, f"pr_{name}.png")
    questions = [qa for qa in _questions(dataset) if qa["id"] in predictions]
    values = [float(na_probs[qa["id"]]) for qa in questions]
    # probabilities on [0, 1] as the official plots; other scores (BERT's null odds) on
    # their own range
    span = (0.0, 1.0) if all(0.0 <= v <= 1.0 for v in values) else (min(values), max(values))
    for label, answerable in (("hasAns", True), ("noAns", False)):
        x = [v for qa, v in zip(questions, values, strict=True)
             if bool(qa["answers"]) == answerable]
        if not x:
            continue
        fig, ax = plt.subplots()
        ax.hist(x, weights=[1.0 / len(x)] * len(x), bins=20, range=span)
        what = "probability" if span == (0.0, 1.0) else "score"
        ax.set(xlabel=f"Model {what} of no-answer", ylabel="Proportion of dataset",
               title=f"Histogram of no-answer {what}: {label}")
        save(fig, f"na_prob_hist_{label}.png")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_file", help="SQuAD JSON (e.g. dev-v1.1.json)")
    parser.add_argument("pred_file", help="predictions.json: {question id: answer text}")
    parser.add_argument("--version", choices=["1.1", "2.0"], default=None)
    parser.add_argument(
        "--na_prob_file",
        "--na-prob-file",
        "-n",
        default=None,
        help="v2.0: {question id: no-answer score} (null_odds.json)",
    )
    parser.add_argument("--na_prob_thresh", "--na-prob-thresh", "-t", type=float, default=1.0)
    parser.add_argument(
        "--out_file", "--out-file", "-o", default=None, help="also write the metrics here"
    )
    parser.add_argument("--out_image_dir", "--out-image-dir", "-p", default=None,
                        help="v2.0 with --na_prob_file: write the precision/recall curves and "
                             "no-answer histograms there (needs matplotlib)")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="accepted for the official script's command lines (no effect)")
    args = parser.parse_args(argv)
    if args.na_prob_thresh != args.na_prob_thresh:  # NaN: every comparison would be false
        raise SystemExit("pybert-squad-evaluate: error: --na_prob_thresh=nan: not a number")
    dataset = _load_json(args.data_file, "data file")
    predictions = _load_json(args.pred_file, "prediction file")
    if not isinstance(dataset, dict) or "data" not in dataset:
        raise SystemExit(f"pybert-squad-evaluate: error: {args.data_file} has no 'data' list")
    if not isinstance(predictions, dict):
        raise SystemExit(f"pybert-squad-evaluate: error: {args.pred_file} must map ids to answers")
    _check_values(predictions, str, args.pred_file, "a string")
    declared = str(dataset.get("version", "1.1")).lstrip("vV")
    version = args.version or ("2.0" if declared.startswith("2") else "1.1")
    try:
        if version == "1.1":
            if args.na_prob_file or args.out_image_dir:
                raise ValueError(f"--{'na_prob_file' if args.na_prob_file else 'out_image_dir'}"
                                 " needs --version 2.0")
            result = evaluate_v1(dataset, predictions)
        else:
            na_probs = _load_json(args.na_prob_file, "na_prob_file") if args.na_prob_file else None
            if na_probs is not None:
                if not isinstance(na_probs, dict):
                    raise ValueError(f"{args.na_prob_file} must map ids to no-answer scores")
                _check_values(na_probs, (int, float), args.na_prob_file, "a finite number")
            if args.out_image_dir and na_probs is None:
                print("pybert-squad-evaluate: --out_image_dir without --na_prob_file: no "
                      "plots (as in the official script)", file=sys.stderr)
            if not (args.out_image_dir and na_probs is not None):
                result = evaluate_v2(dataset, predictions, na_probs, args.na_prob_thresh)
            else:
                result, curves = evaluate_v2_with_curves(dataset, predictions, na_probs,
                                                         args.na_prob_thresh)
                for name, (ap, _, _) in curves.items():
                    result[f"pr_{name}_ap"] = ap
                _plot(args.out_image_dir, curves, dataset, predictions, na_probs)
    except ValueError as e:
        raise SystemExit(f"pybert-squad-evaluate: error: {e}") from None
    except (KeyError, TypeError, AttributeError, IndexError) as e:  # the data's structure
        raise SystemExit(f"pybert-squad-evaluate: error: {args.data_file} is not SQuAD data "
                         f"(data / paragraphs / qas / id / answers / text): "
                         f"{type(e).__name__}: {e}") from None
    text = json.dumps(result, indent=2)
    if args.out_file:  # complete under a temporary name, then renamed
        from pybert.data.records import write_text, write_then_commit

        tmp = args.out_file + ".tmp"
        try:
            write_then_commit(tmp, args.out_file, lambda: write_text(tmp, text + "\n"))
        except OSError as e:
            raise SystemExit(f"pybert-squad-evaluate: error: --out_file {args.out_file}: "
                             f"cannot write it ({e.strerror or e})") from None
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
