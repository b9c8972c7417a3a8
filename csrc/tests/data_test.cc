// Unit tests of the pre-training data core (run by ctest): PyRandom against
// values CPython 3.11 printed for random.Random(seed), Python's round(), and
// the structure of created instances (layout, masks, determinism, argument
// checks). Exactness against the seed's script is tests/test_pretraining_core.py.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/pretraining.h"
#include "data/py_random.h"

#include "tests/expect.h"

namespace {

using pybert::data::CreatePretrainingInstances;
using pybert::data::Documents;
using pybert::data::PretrainingInstances;
using pybert::data::PretrainingOptions;
using pybert::data::PyRandom;
using pybert_test::Expect;

// Known answers, printed by Python 3.11 for each seed:
//   r = random.Random(seed); [r.getrandbits(32) for _ in range(3)]
//   r = random.Random(seed); [r.random().hex() for _ in range(3)]
//   r = random.Random(seed); [r.randint(0, 9) for _ in range(5)], r.randint(2, 125),
//     r.randint(0, 1), r.randint(0, 0), r.randrange(2**40)
//   r = random.Random(seed); x = list(range(10)); r.shuffle(x); r.choice(range(30522)),
//     r.getrandbits(64), r.getrandbits(45)
//   r = random.Random(seed); 700 x getrandbits(32), then getrandbits(32) (past one twist)
struct RandomKat {
  uint64_t seed;
  uint32_t u32[3];
  double random[3];
  int64_t randint[9];
  int shuffled[10];
  uint64_t choice;
  uint64_t bits64;
  uint64_t bits45;
  uint32_t after700;
};

const RandomKat kRandomKats[] = {
    {0,
     {0xd82c07cdU, 0x629f6fbeU, 0xc2094cacU},
     {0x1.b0580f98a7dbep-1, 0x1.84129978f9c1ap-1, 0x1.aeaa51052e978p-2},
     {6, 6, 0, 4, 8, 64, 1, 0, 1052128689543},
     {7, 8, 1, 5, 3, 4, 2, 0, 9, 6},
     11732,
     0xe443df789558867fULL,
     0x6fde87a1613ULL,
     0x7f99d273U},
    {12345,
     {0x6aa79987U, 0xbb91433aU, 0x29a7245U},
     {0x1.aa9e665dc8a18p-2, 0x1.4d392d1f6f840p-7, 0x1.a68177b361de3p-1},
     {6, 0, 4, 5, 3, 36, 1, 0, 272185236665},
     {8, 7, 3, 5, 1, 2, 9, 4, 0, 6},
     5298,
     0x1fcff4545f811cb9ULL,
     0xddadfc9e3b1ULL,
     0x915ad20eU},
    {(uint64_t{1} << 40) + 7,  // two key words
     {0x9d1bb0daU, 0xbf50a462U, 0xd09e5ab5U},
     {0x1.3a3761afd4291p-1, 0x1.a13cb57c0715ap-1, 0x1.e3d88c68edf49p-1},
     {9, 9, 7, 4, 9, 18, 1, 0, 972351302369},
     {0, 5, 2, 3, 6, 1, 8, 4, 7, 9},
     12883,
     0x730d83fe71671b48ULL,
     0x1cb4dd089f98ULL,
     0x568bf9aU},
};

void TestPyRandom() {
  for (const RandomKat& k : kRandomKats) {
    const std::string s = "seed " + std::to_string(k.seed) + ": ";
    PyRandom a(k.seed);
    for (int i = 0; i < 3; ++i) {
      Expect(a.NextUint32() == k.u32[i], s + "getrandbits(32) #" + std::to_string(i));
    }
    PyRandom b(k.seed);
    for (int i = 0; i < 3; ++i) Expect(b.Random() == k.random[i], s + "random() #" + std::to_string(i));
    PyRandom c(k.seed);
    for (int i = 0; i < 5; ++i) {
      Expect(c.RandInt(0, 9) == k.randint[i], s + "randint(0, 9) #" + std::to_string(i));
    }
    Expect(c.RandInt(2, 125) == k.randint[5], s + "randint(2, 125)");
    Expect(c.RandInt(0, 1) == k.randint[6], s + "randint(0, 1)");
    Expect(c.RandInt(0, 0) == k.randint[7], s + "randint(0, 0)");
    Expect(static_cast<int64_t>(c.RandBelow(uint64_t{1} << 40)) == k.randint[8], s + "randrange(2**40)");
    PyRandom d(k.seed);
    std::vector<int> x(10);
    std::iota(x.begin(), x.end(), 0);
    d.Shuffle(x.data(), x.size());
    Expect(std::equal(x.begin(), x.end(), k.shuffled), s + "shuffle(range(10))");
    Expect(d.ChoiceIndex(30522) == k.choice, s + "choice(range(30522))");
    Expect(d.GetRandBits(64) == k.bits64, s + "getrandbits(64)");
    Expect(d.GetRandBits(45) == k.bits45, s + "getrandbits(45)");
    PyRandom e(k.seed);
    for (int i = 0; i < 700; ++i) e.NextUint32();
    Expect(e.NextUint32() == k.after700, s + "701st getrandbits(32)");
  }
  // Shuffles of 0 or 1 items draw nothing.
  PyRandom f(0), g(0);
  int one = 5;
  f.Shuffle(&one, 1);
  f.Shuffle(&one, 0);
  Expect(f.NextUint32() == g.NextUint32(), "shuffle of <= 1 item draws nothing");
}

void TestRound() {
  using pybert::data::RoundHalfEven;
  const double cases[][2] = {{0.5, 0}, {1.5, 2}, {2.5, 2}, {3.5, 4}, {19.2, 19}, {2.4999999, 2},
                             {2.5000001, 3}, {0.0, 0}, {127.0, 127}, {19.5, 20}, {18.5, 18}};
  for (const auto& c : cases) {
    Expect(RoundHalfEven(c[0]) == c[1], "round(" + std::to_string(c[0]) + ")");
  }
}

// Synthetic corpus: ids 10..899 are words, 900..999 are "##" pieces.
constexpr int32_t kVocab = 1000, kCls = 1, kSep = 2, kMask = 3;

struct Corpus {
  std::vector<int32_t> ids;
  std::vector<int64_t> sentence_splits{0};
  std::vector<int64_t> document_splits{0};
  std::vector<uint8_t> is_subword;
  Documents View() const {
    Documents d;
    d.token_ids = ids.data();
    d.num_tokens = static_cast<int64_t>(ids.size());
    d.sentence_splits = sentence_splits.data();
    d.num_sentences = static_cast<int64_t>(sentence_splits.size()) - 1;
    d.document_splits = document_splits.data();
    d.num_documents = static_cast<int64_t>(document_splits.size()) - 1;
    return d;
  }
};

Corpus MakeCorpus(int num_documents, uint64_t seed) {
  Corpus c;
  c.is_subword.assign(kVocab, 0);
  for (int v = 900; v < kVocab; ++v) c.is_subword[v] = 1;
  PyRandom rng(seed);
  for (int d = 0; d < num_documents; ++d) {
    const int64_t sentences = rng.RandInt(1, 8);
    for (int64_t s = 0; s < sentences; ++s) {
      const int64_t words = rng.RandInt(1, 15);
      for (int64_t w = 0; w < words; ++w) {
        c.ids.push_back(static_cast<int32_t>(rng.RandInt(10, 899)));
        const int64_t pieces = rng.RandInt(0, 4) == 0 ? rng.RandInt(1, 2) : 0;
        for (int64_t p = 0; p < pieces; ++p) c.ids.push_back(static_cast<int32_t>(rng.RandInt(900, 999)));
      }
      c.sentence_splits.push_back(static_cast<int64_t>(c.ids.size()));
    }
    c.document_splits.push_back(static_cast<int64_t>(c.sentence_splits.size()) - 1);
  }
  return c;
}

PretrainingOptions Options() {
  PretrainingOptions o;
  o.max_seq_length = 32;
  o.max_predictions_per_seq = 5;
  o.masked_lm_prob = 0.15;
  o.short_seq_prob = 0.2;
  o.dupe_factor = 3;
  o.cls_id = kCls;
  o.sep_id = kSep;
  o.mask_id = kMask;
  o.vocab_size = kVocab;
  return o;
}

bool Same(const PretrainingInstances& a, const PretrainingInstances& b) {
  return a.num_instances == b.num_instances && a.input_ids == b.input_ids &&
         a.segment_ids == b.segment_ids && a.input_mask == b.input_mask &&
         a.masked_lm_positions == b.masked_lm_positions &&
         a.masked_lm_ids == b.masked_lm_ids && a.masked_lm_weights == b.masked_lm_weights &&
         a.next_sentence_labels == b.next_sentence_labels;
}

// Layout, padding and masking invariants of every row.
void CheckStructure(const Corpus& c, const PretrainingOptions& o, const PretrainingInstances& r,
                    const std::string& what) {
  const int64_t n = r.num_instances, L = o.max_seq_length, P = o.max_predictions_per_seq;
  Expect(n > 0, what + ": some instances");
  Expect(r.max_seq_length == L && r.max_predictions_per_seq == P, what + ": sizes recorded");
  Expect(static_cast<int64_t>(r.input_ids.size()) == n * L &&
             static_cast<int64_t>(r.input_mask.size()) == n * L &&
             static_cast<int64_t>(r.segment_ids.size()) == n * L,
         what + ": [N, L] arrays");
  Expect(static_cast<int64_t>(r.masked_lm_positions.size()) == n * P &&
             static_cast<int64_t>(r.masked_lm_ids.size()) == n * P &&
             static_cast<int64_t>(r.masked_lm_weights.size()) == n * P &&
             static_cast<int64_t>(r.next_sentence_labels.size()) == n,
         what + ": [N, P] and [N] arrays");
  int64_t random_next = 0;
  for (int64_t i = 0; i < n && pybert_test::failures < 20; ++i) {
    const std::string row = what + ": row " + std::to_string(i);
    const int32_t* ids = &r.input_ids[i * L];
    const int32_t* mask = &r.input_mask[i * L];
    const int32_t* seg = &r.segment_ids[i * L];
    const int32_t* pos = &r.masked_lm_positions[i * P];
    const int32_t* lab = &r.masked_lm_ids[i * P];
    const float* w = &r.masked_lm_weights[i * P];
    int64_t len = 0;
    while (len < L && mask[len] == 1) ++len;
    bool padding_ok = true;
    for (int64_t t = len; t < L; ++t) padding_ok &= mask[t] == 0 && ids[t] == 0 && seg[t] == 0;
    Expect(len >= 5 && padding_ok, row + ": mask is 1s then 0-padding");
    int64_t m = 0;
    while (m < P && w[m] == 1.0f) ++m;
    bool mpad_ok = m >= 1;
    for (int64_t k = m; k < P; ++k) mpad_ok &= w[k] == 0.0f && pos[k] == 0 && lab[k] == 0;
    Expect(mpad_ok, row + ": weights 1s then 0-padding, at least one prediction");
    const int64_t want = std::min<int64_t>(
        P, std::max<int64_t>(1, static_cast<int64_t>(pybert::data::RoundHalfEven(len * o.masked_lm_prob))));
    Expect(m <= want, row + ": no more predictions than num_to_predict");
    // The original tokens: labels put back.
    std::vector<int32_t> orig(ids, ids + len);
    bool sorted_ok = true;
    for (int64_t k = 0; k < m; ++k) {
      sorted_ok &= pos[k] > 0 && pos[k] < len - 1 && (k == 0 || pos[k] > pos[k - 1]);
      if (pos[k] > 0 && pos[k] < len) orig[pos[k]] = lab[k];
    }
    Expect(sorted_ok, row + ": masked positions increasing, inside the tokens");
    int64_t a_end = 0;  // first segment-1 position
    while (a_end < len && seg[a_end] == 0) ++a_end;
    bool seg_ok = a_end >= 3 && a_end <= len - 2;
    for (int64_t t = a_end; t < len; ++t) seg_ok &= seg[t] == 1;
    Expect(seg_ok, row + ": segment ids 0...0 1...1 with both segments non-empty");
    bool layout_ok = orig[0] == kCls && orig[a_end - 1] == kSep && orig[len - 1] == kSep;
    for (int64_t t = 1; t < len - 1; ++t) {
      layout_ok &= t == a_end - 1 || (orig[t] >= 10 && orig[t] < kVocab);
    }
    Expect(layout_ok, row + ": [CLS] A [SEP] B [SEP] with corpus ids between");
    for (int64_t k = 0; k < m; ++k) {
      Expect(lab[k] != kCls && lab[k] != kSep, row + ": [CLS]/[SEP] never predicted");
    }
    if (o.do_whole_word_mask) {
      // A masked word is masked whole: its pieces and its head go together.
      std::vector<uint8_t> is_masked(len, 0);
      for (int64_t k = 0; k < m; ++k) is_masked[pos[k]] = 1;
      bool whole = true;
      for (int64_t t = 1; t + 1 < len; ++t) {
        if (c.is_subword[orig[t + 1]] && t + 1 != a_end - 1 && t + 1 != len - 1 && orig[t] != kSep) {
          whole &= is_masked[t] == is_masked[t + 1];
        }
      }
      Expect(whole, row + ": whole words masked together");
    }
    const int32_t label = r.next_sentence_labels[i];
    Expect(label == 0 || label == 1, row + ": next sentence label is 0 or 1");
    random_next += label;
  }
  Expect(random_next > 0 && random_next < n, what + ": both next sentence labels occur");
}

void TestInstances() {
  const Corpus c = MakeCorpus(12, 99);
  PretrainingOptions o = Options();
  const auto r1 = CreatePretrainingInstances(c.View(), c.is_subword.data(), 12345, o);
  CheckStructure(c, o, r1, "default");
  const auto r2 = CreatePretrainingInstances(c.View(), c.is_subword.data(), 12345, o);
  Expect(Same(r1, r2), "same seed, same instances");
  const auto r3 = CreatePretrainingInstances(c.View(), c.is_subword.data(), 12346, o);
  Expect(!Same(r1, r3), "another seed, other instances");

  o.do_whole_word_mask = true;
  CheckStructure(c, o, CreatePretrainingInstances(c.View(), c.is_subword.data(), 1, o), "whole word");
  o.max_ngram_size = 3;
  o.masked_lm_prob = 0.4;
  o.max_predictions_per_seq = 12;
  CheckStructure(c, o, CreatePretrainingInstances(c.View(), c.is_subword.data(), 2, o), "3-grams");
  o = Options();
  o.max_seq_length = 5;  // the smallest: [CLS] a [SEP] b [SEP]
  o.short_seq_prob = 1.0;
  CheckStructure(c, o, CreatePretrainingInstances(c.View(), c.is_subword.data(), 3, o), "max_seq_length 5");

  // One document: the random "next" document is itself after ten tries.
  Corpus one = MakeCorpus(1, 5);
  o = Options();
  const auto single = CreatePretrainingInstances(one.View(), one.is_subword.data(), 4, o);
  Expect(single.num_instances >= o.dupe_factor, "one document still gives instances");

  // Empty sentences (the caller should drop them) never crash: instances
  // without an A or B segment are skipped.
  Corpus holes;
  holes.is_subword.assign(kVocab, 0);
  holes.ids = {10, 11, 12};
  holes.sentence_splits = {0, 0, 0, 3, 3};
  holes.document_splits = {0, 2, 4};
  const auto skipped = CreatePretrainingInstances(holes.View(), holes.is_subword.data(), 6, Options());
  for (int64_t i = 0; i < skipped.num_instances; ++i) {
    Expect(skipped.input_ids[i * 32] == kCls, "empty sentences: rows still well-formed");
  }
}

void ExpectInvalid(const Corpus& c, const PretrainingOptions& o, const std::string& name) {
  try {
    CreatePretrainingInstances(c.View(), c.is_subword.data(), 0, o);
    Expect(false, "no error for bad " + name);
  } catch (const std::invalid_argument& e) {
    Expect(std::string(e.what()).find(name) != std::string::npos,
           "error for bad " + name + " names it: " + e.what());
  }
}

void TestValidation() {
  const Corpus c = MakeCorpus(3, 1);
  const PretrainingOptions ok = Options();
  auto with = [&](auto edit) {
    PretrainingOptions o = ok;
    edit(o);
    return o;
  };
  ExpectInvalid(c, with([](PretrainingOptions& o) { o.max_seq_length = 4; }), "max_seq_length");
  ExpectInvalid(c, with([](PretrainingOptions& o) { o.max_predictions_per_seq = 0; }),
                "max_predictions_per_seq");
  ExpectInvalid(c, with([](PretrainingOptions& o) { o.masked_lm_prob = 1.5; }), "masked_lm_prob");
  ExpectInvalid(c, with([](PretrainingOptions& o) { o.masked_lm_prob = 0.0 / 0.0; }), "masked_lm_prob");
  ExpectInvalid(c, with([](PretrainingOptions& o) { o.short_seq_prob = -0.1; }), "short_seq_prob");
  ExpectInvalid(c, with([](PretrainingOptions& o) { o.dupe_factor = 0; }), "dupe_factor");
  ExpectInvalid(c, with([](PretrainingOptions& o) { o.max_ngram_size = 2; }), "max_ngram_size");
  ExpectInvalid(c, with([](PretrainingOptions& o) { o.max_ngram_size = -1; }), "max_ngram_size");
  ExpectInvalid(c, with([](PretrainingOptions& o) { o.cls_id = kVocab; }), "cls_id");
  ExpectInvalid(c, with([](PretrainingOptions& o) { o.sep_id = -1; }), "sep_id");
  ExpectInvalid(c, with([](PretrainingOptions& o) { o.mask_id = kVocab + 5; }), "mask_id");
  ExpectInvalid(c, with([](PretrainingOptions& o) { o.vocab_size = 0; }), "vocab_size");
  Corpus bad_id = c;
  bad_id.ids[2] = kVocab;
  ExpectInvalid(bad_id, ok, "sentence_ids");
  Corpus empty_doc = c;
  empty_doc.document_splits.insert(empty_doc.document_splits.begin() + 1, 0);
  ExpectInvalid(empty_doc, ok, "document_splits");
  Corpus bad_splits = c;
  bad_splits.sentence_splits.back() += 1;
  ExpectInvalid(bad_splits, ok, "sentence_splits");
  Corpus none;
  none.is_subword.assign(kVocab, 0);
  ExpectInvalid(none, ok, "document");
}

}  // namespace

int main() {
  TestPyRandom();
  TestRound();
  TestInstances();
  TestValidation();
  return pybert_test::Finish("data_test");
}
