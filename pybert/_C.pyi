"""Type stubs of the native module pybert._C (csrc/bindings)."""

import numpy as np

unicode_version: str

class VocabError(ValueError): ...
class EncodeError(ValueError): ...

class WordpieceTokenizer:
    def __init__(
        self,
        vocab_data: bytes,
        source: str,
        lower_case: bool = ...,
        max_input_chars_per_word: int = ...,
        unk_token: str = ...,
        split_on_punc: bool = ...,
    ) -> None: ...
    def encode(self, text: str) -> tuple[np.ndarray, np.ndarray]: ...
    def basic_tokenize(self, text: str) -> list[str]: ...
    def wordpiece(self, word: str) -> list[int]: ...
    def encode_batch(
        self,
        texts: list[str] | tuple[str, ...],
        text_pairs: list[str] | tuple[str, ...] | None,
        max_seq_length: int,
        truncation: str,
        add_special_tokens: bool,
        offsets: bool,
        pad: bool,
        num_threads: int,
        empty_pair_as_single: bool = ...,
    ) -> dict[str, np.ndarray]: ...
    def tokens(self) -> list[str]: ...
    def vocab_size(self) -> int: ...
    def token_to_id(self, token: str) -> int: ...

def squad_postprocess(
    doc_data: bytes,
    doc_offsets: np.ndarray,
    doc_splits: np.ndarray,
    feature_example: np.ndarray,
    token_data: bytes,
    token_offsets: np.ndarray,
    token_splits: np.ndarray,
    token_to_orig: np.ndarray,
    max_context: np.ndarray,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best_size: int,
    max_answer_length: int,
    do_lower_case: bool,
    version_2_with_negative: bool,
    null_score_diff_threshold: float,
    verbose: bool,
    num_threads: int,
) -> list[tuple[str, list[dict[str, object]], float | None, list[str]]]: ...
def squad_final_text(pred_text: str, orig_text: str, do_lower_case: bool) -> str: ...
def create_pretraining_instances(
    sentence_ids: np.ndarray,
    sentence_splits: np.ndarray,
    document_splits: np.ndarray,
    is_subword: np.ndarray,
    seed: int,
    max_seq_length: int,
    max_predictions_per_seq: int,
    masked_lm_prob: float,
    short_seq_prob: float,
    dupe_factor: int,
    do_whole_word_mask: bool,
    max_ngram_size: int,
    cls_id: int,
    sep_id: int,
    mask_id: int,
) -> dict[str, np.ndarray]: ...
def serialize_examples(columns: list[tuple[str, np.ndarray]]) -> list[bytes]: ...
