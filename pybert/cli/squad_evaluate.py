"""pybert-squad-evaluate: the official SQuAD v1.1 / v2.0 metrics for a prediction file.

  pybert-squad-evaluate dev-v1.1.json predictions.json
  pybert-squad-evaluate dev-v2.0.json predictions.json --na_prob_file null_odds.json

Prints the metrics as JSON, like the official scripts. --version defaults to
the data file's own "version" field.
"""

from __future__ import annotations

import argparse
import json
import sys

from pybert.squad.evaluate import evaluate_v1, evaluate_v2


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
        if not isinstance(value, kind) or isinstance(value, bool):
            raise SystemExit(f"pybert-squad-evaluate: error: {path}: the value for {key!r} is "
                             f"{json.dumps(value)[:50]}, not {what}")


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
            if args.na_prob_file:
                raise ValueError("--na_prob_file needs --version 2.0")
            result = evaluate_v1(dataset, predictions)
        else:
            na_probs = _load_json(args.na_prob_file, "na_prob_file") if args.na_prob_file else None
            if na_probs is not None:
                if not isinstance(na_probs, dict):
                    raise ValueError(f"{args.na_prob_file} must map ids to no-answer scores")
                _check_values(na_probs, (int, float), args.na_prob_file, "a number")
            result = evaluate_v2(dataset, predictions, na_probs, args.na_prob_thresh)
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
