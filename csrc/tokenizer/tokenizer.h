// BERT tokenizer core: the original BasicTokenizer + WordpieceTokenizer rules
// of google-research/bert (as run by Python 3), in one pass over UTF-8 text.
//
//   "Héllo, wörld!" (uncased) -> basic: ["hello", ",", "world", "!"]
//   "unaffable"                -> word pieces: ["un", "##aff", "##able"]
//
// Pipeline (each step is the original's, in the original's order):
//   1. clean: drop NUL, U+FFFD, Cc/Cf (but \t\n\r); Zs/\t\n\r become ' '
//   2. put spaces around CJK ideographs (the original's code point ranges)
//   3. split on str.isspace()
//   4. uncased only: str.lower() (with CPython's Final_Sigma rule), NFD,
//      canonical reordering, drop category Mn
//   5. split off punctuation (ASCII symbol ranges + Unicode P*)
//   6. greedy longest-match-first WordPiece with "##" continuations; a word
//      longer than max_input_chars_per_word or with an unmatchable rest is
//      one unk token.
// Printable-ASCII tokens (the bulk of English text) take a fast path that
// skips decoding and the Unicode tables; tokens whose characters normalize
// 1:1 (any cased text, most uncased text) a Unicode fast path on the input
// bytes; everything else (removed characters, decompositions, Final_Sigma...)
// the general path on code points.
//
// Offsets are [begin, end) indices of code points in the input, i.e. Python
// str indices when the input came from a Python str.
#ifndef PYBERT_TOKENIZER_TOKENIZER_H_
#define PYBERT_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace pybert {

struct TokenizerOptions {
  bool lower_case = true;                // do_lower_case: lower + strip accents
  bool split_on_punc = true;             // the seed's BasicTokenizer(split_on_punc=)
  int32_t max_input_chars_per_word = 400;  // the seed's default (original: 200)
  std::string unk_token = "[UNK]";       // must be in the vocab
};

// Word-piece output of one text: ids and, optionally, [begin, end) offsets.
struct PieceSink {
  std::vector<int32_t>* ids = nullptr;      // required
  std::vector<int32_t>* offsets = nullptr;  // optional: 2 entries per id
};

class BertTokenizer {
 private:
  struct Scratch;

 public:
  // Throws VocabError when the vocab lacks options.unk_token, and
  // std::invalid_argument for a non-positive max_input_chars_per_word.
  BertTokenizer(Vocab vocab, TokenizerOptions options);

  // Steps 1-5 only: the BasicTokenizer's output tokens, UTF-8.
  std::vector<std::string> BasicTokenize(std::string_view text) const;

  // Working memory for one thread, reusable across calls (optional: calls
  // without one use a thread_local one).
  class Workspace {
   public:
    Workspace();
    ~Workspace();
    Workspace(const Workspace&) = delete;
    Workspace& operator=(const Workspace&) = delete;

   private:
    friend class BertTokenizer;
    std::unique_ptr<Scratch> scratch_;
  };

  // Appends the word-piece ids (and offsets) of `text`. Thread-safe; with
  // a workspace (one per thread), it skips finding the thread's own.
  void Encode(std::string_view text, PieceSink sink, Workspace* workspace = nullptr) const;

  // BasicTokenize, appended to `joined` separated by single spaces.
  void BasicTokenizeJoined(std::string_view text, std::string* joined,
                           Workspace* workspace = nullptr) const;

  // Step 6 only, on one basic token (UTF-8): the WordpieceTokenizer's output.
  std::vector<int32_t> WordpieceIds(std::string_view word) const;

  const Vocab& vocab() const { return vocab_; }
  const TokenizerOptions& options() const { return options_; }
  int32_t unk_id() const { return unk_id_; }

 private:
  static Scratch& ThreadScratch();
  template <typename Fn>
  void Run(std::string_view text, Scratch& scratch, Fn&& on_word) const;
  template <typename Fn>
  void AsciiToken(const char* p, size_t n, int32_t char_base, Scratch& scratch, Fn&& on_word) const;
  template <typename Fn>
  void UnicodeToken(const char* p, size_t n, int32_t char_base, Scratch& scratch, Fn&& on_word) const;
  bool NeedsGeneral(char32_t cp) const;
  template <typename Fn>
  void GeneralToken(const uint8_t* p, size_t n, int32_t char_base, Scratch& scratch, Fn&& on_word) const;
  // `head_hash`: StringTable::Hash of the whole word, or nullptr to compute it.
  void WordPiece(const char* word, size_t nbytes, size_t nchars, const int32_t* char_map,
                 int32_t char_base, PieceSink sink, const uint64_t* head_hash = nullptr,
                 Scratch* scratch = nullptr) const;

  Vocab vocab_;
  TokenizerOptions options_;
  int32_t unk_id_ = -1;
  uint64_t serial_;  // unique per instance: keys per-thread lookup memos
};

}  // namespace pybert

#endif  // PYBERT_TOKENIZER_TOKENIZER_H_
