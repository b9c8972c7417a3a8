#include "squad/postprocess.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <thread>
#include <type_traits>
#include <utility>

#include "common/parallel.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_tables.h"
#include "tokenizer/utf8.h"

namespace pybert {
namespace squad {
namespace {

// BasicTokenizer(do_lower_case) of the seed, used by get_final_text.
const BertTokenizer& Basic(bool lower) {
  static const BertTokenizer* uncased = new BertTokenizer(
      Vocab::FromText("[UNK]\n", "<basic>"), TokenizerOptions{true, true, 400, "[UNK]"});
  static const BertTokenizer* cased = new BertTokenizer(
      Vocab::FromText("[UNK]\n", "<basic>"), TokenizerOptions{false, true, 400, "[UNK]"});
  return lower ? *uncased : *cased;
}

std::u32string Decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  for (size_t i = 0; i < s.size();) {
    char32_t cp;
    i += DecodeUtf8(p + i, s.size() - i, &cp);
    out.push_back(cp);
  }
  return out;
}

std::string Encode(const char32_t* s, size_t n) {
  std::string out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) AppendUtf8(s[i], &out);
  return out;
}

bool IsPySpace(char32_t c) {
  return c <= unicode::kMaxCodePoint && (unicode::Lookup(c).flags & unicode::kPySpace);
}

// s = s.replace(old, "") in place (old is ASCII, so byte matching is exact).
void RemoveAll(std::string* s, std::string_view old) {
  size_t hit = s->find(old);
  if (hit == std::string::npos) return;
  size_t out = hit;
  size_t in = hit + old.size();
  while (true) {
    const size_t next = s->find(old, in);
    const size_t stop = next == std::string::npos ? s->size() : next;
    if (stop > in) {
      std::memmove(&(*s)[out], s->data() + in, stop - in);
      out += stop - in;
    }
    if (next == std::string::npos) break;
    in = next + old.size();
  }
  s->resize(out);
}

// get_final_text's verbose message when the texts differ once spaces are
// removed (built only when there is a log to write it to).
std::string LengthMismatch(std::string_view orig, std::string_view tok,
                           const std::vector<std::string>* log) {
  if (log == nullptr) return std::string();
  auto without_spaces = [](std::string_view s) {
    std::string out;
    for (char c : s) {
      if (c != ' ') out.push_back(c);
    }
    return out;
  };
  return "Length not equal after stripping spaces: '" + without_spaces(orig) + "' vs '" +
         without_spaces(tok) + "'";
}

bool IsAscii(std::string_view s) {
  unsigned char acc = 0;
  for (char c : s) acc |= static_cast<unsigned char>(c);
  return acc < 0x80;
}

size_t CountSpaces(std::string_view s) {
  return static_cast<size_t>(std::count(s.begin(), s.end(), ' '));
}

// Byte offset of the k-th (0-based) character other than ' ' (ASCII text), or s.size().
size_t NthNonSpace(std::string_view s, size_t k) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    while (i < n && s[i] == ' ') ++i;
    const void* hit = i < n ? std::memchr(s.data() + i, ' ', n - i) : nullptr;
    const size_t run_end = hit ? static_cast<size_t>(static_cast<const char*>(hit) - s.data()) : n;
    if (k < run_end - i) return i + k;
    k -= run_end - i;
    i = run_end;
  }
  return n;
}

// str.isspace() for ASCII: \t \n \v \f \r, \x1c-\x1f and ' '.
inline bool IsAsciiSpace(uint8_t c) { return (c >= 9 && c <= 13) || (c >= 28 && c <= 32); }

// Bytes that are not "plain": non-ASCII, ASCII whitespace and '#'.
struct PlainTable {
  bool plain[256];
  constexpr PlainTable() : plain() {
    for (int c = 0; c < 256; ++c) {
      plain[c] = c < 0x80 && c != '#' && !((c >= 9 && c <= 13) || (c >= 28 && c <= 32));
    }
  }
};
constexpr PlainTable kPlain;

// No '#' and no character str.split() splits on: plain ASCII bytes (see
// PlainTable) and valid UTF-8 characters other than Python whitespace.
inline bool PlainPiece(std::string_view s) {
  bool ok = true;
  for (char c : s) ok &= kPlain.plain[static_cast<uint8_t>(c)];
  if (ok) return true;
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  for (size_t i = 0; i < s.size();) {
    if (p[i] < 0x80) {
      if (!kPlain.plain[p[i]]) return false;
      ++i;
      continue;
    }
    char32_t cp;
    const size_t len = DecodeUtf8(p + i, s.size() - i, &cp);
    if (len == 1 || IsPySpace(cp)) return false;  // not UTF-8, or whitespace
    i += len;
  }
  return true;
}

std::string NormalizeSpaces(const std::string& text);

// text = " ".join(text.split()), without copying when already normalized.
void NormalizeSpacesInPlace(std::string* text) {
  bool clean = true;
  const size_t n = text->size();
  for (size_t i = 0; i < n && clean; ++i) {
    const auto c = static_cast<uint8_t>((*text)[i]);
    if (c >= 0x80 || (IsAsciiSpace(c) && (c != ' ' || i == 0 || i + 1 == n || (*text)[i - 1] == ' '))) {
      clean = false;
    }
  }
  if (!clean) *text = NormalizeSpaces(*text);
}

// " ".join(text.split()) (which also strips).
std::string NormalizeSpaces(const std::string& text) {
  bool ascii = true, clean = true;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<uint8_t>(text[i]);
    ascii &= c < 0x80;
    // already normalized: single ' ' separators, nothing at the ends
    if (IsAsciiSpace(c) && (c != ' ' || i == 0 || i + 1 == text.size() || text[i - 1] == ' ')) {
      clean = false;
    }
  }
  if (ascii && clean) return text;
  if (ascii) {
    std::string out;
    out.reserve(text.size());
    size_t i = 0;
    while (i < text.size()) {
      while (i < text.size() && IsAsciiSpace(static_cast<uint8_t>(text[i]))) ++i;
      size_t j = i;
      while (j < text.size() && !IsAsciiSpace(static_cast<uint8_t>(text[j]))) ++j;
      if (j > i) {
        if (!out.empty()) out.push_back(' ');
        out.append(text, i, j - i);
      }
      i = j;
    }
    return out;
  }
  // Non-ASCII: split on bytes, decoding only multi-byte characters to test
  // them for str.isspace(); words are copied as bytes (valid UTF-8 in: texts
  // come from Python str; anything else takes the decoding path below).
  {
    std::string out;
    out.reserve(text.size());
    const auto* p = reinterpret_cast<const uint8_t*>(text.data());
    const size_t n = text.size();
    bool valid = true;
    auto space_at = [&](size_t i, size_t* len) {
      if (p[i] < 0x80) {
        *len = 1;
        return IsAsciiSpace(p[i]);
      }
      char32_t cp;
      *len = DecodeUtf8(p + i, n - i, &cp);
      if (*len == 1) valid = false;  // not a UTF-8 sequence
      return IsPySpace(cp);
    };
    size_t i = 0, len = 0;
    while (i < n && valid) {
      while (i < n && space_at(i, &len)) i += len;
      size_t j = i;
      while (j < n && !space_at(j, &len)) j += len;
      if (j > i) {
        if (!out.empty()) out.push_back(' ');
        out.append(text, i, j - i);
      }
      i = j;
    }
    if (valid) return out;
  }
  std::u32string cps = Decode(text);
  std::string out;
  size_t i = 0;
  while (i < cps.size()) {
    while (i < cps.size() && IsPySpace(cps[i])) ++i;
    size_t j = i;
    while (j < cps.size() && !IsPySpace(cps[j])) ++j;
    if (j > i) {
      if (!out.empty()) out.push_back(' ');
      out += Encode(cps.data() + i, j - i);
    }
    i = j;
  }
  return out;
}

// Top-k indexes by descending score, ties to the lower index (what the seed's
// stable sort gives). Insertion into a small sorted buffer that keeps the
// values beside the indexes; the scan checks 8 logits at a time against the
// current k-th best (one branch per block: most blocks hold no candidate).
template <typename T>
void BestIndexesInsertion(const T* logits, int64_t n, int k, std::vector<int32_t>* out,
                          std::vector<double>* values) {
  const size_t keep = std::min<size_t>(static_cast<size_t>(k), static_cast<size_t>(n));
  out->resize(keep);
  values->resize(keep);
  if (keep == 0) return;
  int32_t* best = out->data();
  double* vals = values->data();
  size_t size = 0;
  auto insert = [&](int64_t i) {
    const double v = static_cast<double>(logits[i]);
    // first slot holding a smaller value: equal values stay ahead (ties keep the
    // earlier index first); callers only insert while there is room or v beats
    // the k-th best, so pos < keep
    const size_t pos = static_cast<size_t>(
        std::upper_bound(vals, vals + size, v, std::greater<double>()) - vals);
    const size_t moved = (size < keep ? size : keep - 1) - pos;
    std::memmove(vals + pos + 1, vals + pos, moved * sizeof(double));
    std::memmove(best + pos + 1, best + pos, moved * sizeof(int32_t));
    vals[pos] = v;
    best[pos] = static_cast<int32_t>(i);
    if (size < keep) ++size;
  };
  int64_t i = 0;
  for (; i < n && size < keep; ++i) insert(i);
  // Compared in T: vals hold widened T values, so the cast back is exact.
  T threshold = static_cast<T>(vals[keep - 1]);
  for (; i + 8 <= n; i += 8) {
    const T* b = logits + i;
    const bool any = (b[0] > threshold) | (b[1] > threshold) | (b[2] > threshold) |
                     (b[3] > threshold) | (b[4] > threshold) | (b[5] > threshold) |
                     (b[6] > threshold) | (b[7] > threshold);
    if (!any) continue;
    for (int64_t j = i; j < i + 8; ++j) {
      if (logits[j] > threshold) {
        insert(j);
        threshold = static_cast<T>(vals[keep - 1]);
      }
    }
  }
  for (; i < n; ++i) {
    if (logits[i] > threshold) {
      insert(i);
      threshold = static_cast<T>(vals[keep - 1]);
    }
  }
}

// Scratch memory of BestIndexes.
template <typename T>
struct TopKBuffers {
  std::vector<T> block_max, cand_value;
};
struct TopKScratch {
  std::vector<double> values;
  TopKBuffers<float> f32;
  TopKBuffers<double> f64;
  std::vector<int32_t> cand_index;
  template <typename T>
  TopKBuffers<T>& buffers() {
    if constexpr (std::is_same_v<T, float>) {
      return f32;
    } else {
      return f64;
    }
  }
};

// A value t in [lo, hi] with at least k of v[0, n) >= t, given that lo is one:
// bisection with branch-free updates (counting loops vectorize). hi need not
// be exceeded by fewer than k values; the result only gets closer to the k-th
// largest value (from below) as steps grow.
template <typename T>
T RaiseLowerBound(const T* v, int64_t n, int k, T lo, T hi, int steps) {
  for (int s = 0; s < steps; ++s) {
    const T mid = lo + (hi - lo) / 2;
    int32_t count = 0;
    for (int64_t i = 0; i < n; ++i) count += v[i] >= mid;
    const bool ok = count >= k;
    lo = ok ? mid : lo;
    hi = ok ? hi : mid;
  }
  return lo;
}

// The same result as BestIndexesInsertion, for long rows, with few
// data-dependent branches (on random logits each one is a coin toss):
//  1. maxima of 8-logit blocks; any t with k block maxima >= t has k logits
//     >= t, so it is <= the k-th largest logit. t is raised by bisection over
//     the maxima (from their minimum, where all 2k+ blocks count).
//  2. the logits >= t (from blocks whose maximum reaches it) are candidates;
//     the same bisection over them raises t to just under the k-th largest,
//     and the candidates below it are dropped.
//  3. each remaining candidate's rank in (value descending, index ascending)
//     order is the number of candidates before it in that order (larger, or
//     equal at a lower index: they are in index order); ranks < k are the
//     answer.
// Ties at the k-th value keep every tied candidate (step 3 orders them), so
// the result equals the stable sort's whatever the values.
template <typename T>
void BestIndexes(const T* logits, int64_t n, int k, std::vector<int32_t>* out, TopKScratch* scratch) {
  const int64_t blocks = n / 8;
  if (k < 1 || blocks < 2 * static_cast<int64_t>(k)) {
    BestIndexesInsertion(logits, n, k, out, &scratch->values);
    return;
  }
  TopKBuffers<T>& buf = scratch->buffers<T>();
  buf.block_max.resize(static_cast<size_t>(blocks));
  T* maxima = buf.block_max.data();
  T lo = std::numeric_limits<T>::infinity(), hi = -std::numeric_limits<T>::infinity();
  for (int64_t b = 0; b < blocks; ++b) {
    const T* p = logits + 8 * b;
    const T m0 = std::max(p[0], p[1]), m1 = std::max(p[2], p[3]);
    const T m2 = std::max(p[4], p[5]), m3 = std::max(p[6], p[7]);
    const T m = std::max(std::max(m0, m1), std::max(m2, m3));
    maxima[b] = m;
    lo = std::min(lo, m);
    hi = std::max(hi, m);
  }
  T bound = RaiseLowerBound(maxima, blocks, k, lo, hi, 8);
  buf.cand_value.resize(static_cast<size_t>(n));
  scratch->cand_index.resize(static_cast<size_t>(n));
  T* cv = buf.cand_value.data();
  int32_t* ci = scratch->cand_index.data();
  int64_t count = 0;
  auto scan = [&](int64_t from, int64_t to) {  // write each logit, keep those >= bound
    for (int64_t i = from; i < to; ++i) {
      cv[count] = logits[i];
      ci[count] = static_cast<int32_t>(i);
      count += logits[i] >= bound;
    }
  };
  for (int64_t b = 0; b < blocks; ++b) {  // only blocks whose maximum reaches the bound
    if (maxima[b] >= bound) scan(8 * b, 8 * b + 8);
  }
  scan(8 * blocks, n);
  for (int64_t i = 8 * blocks; i < n; ++i) hi = std::max(hi, logits[i]);  // hi: the largest logit
  if (count > k) {
    bound = RaiseLowerBound(cv, count, k, bound, hi, 12);
    int64_t kept = 0;
    for (int64_t i = 0; i < count; ++i) {
      cv[kept] = cv[i];
      ci[kept] = ci[i];
      kept += cv[i] >= bound;
    }
    count = kept;
  }
  out->resize(static_cast<size_t>(k));
  int32_t* best = out->data();
  const auto c = static_cast<int32_t>(count);
  if (c > 256) {  // many ties at the bound (e.g. constant logits): O(c log c), not O(c^2)
    std::vector<int32_t> pos(static_cast<size_t>(c));
    for (int32_t i = 0; i < c; ++i) pos[static_cast<size_t>(i)] = i;
    const int32_t top = static_cast<int32_t>(std::min<int64_t>(k, c));
    std::partial_sort(pos.begin(), pos.begin() + top, pos.end(), [cv](int32_t a, int32_t b) {
      return cv[a] > cv[b] || (cv[a] == cv[b] && a < b);  // the rank below, as an order
    });
    for (int32_t r = 0; r < top; ++r) best[r] = ci[pos[static_cast<size_t>(r)]];
    return;
  }
  for (int32_t i = 0; i < c; ++i) {
    const T v = cv[i];
    int32_t rank = 0;  // the same trip count for every i (a predictable loop)
    for (int32_t j = 0; j < c; ++j) rank += (cv[j] > v) | ((cv[j] == v) & (j < i));
    if (rank < k) best[rank] = ci[i];
  }
}

struct Prelim {
  double score;     // start_logit + end_logit
  int64_t order;    // position in the seed's candidate order (ties keep it)
  int64_t feature;  // global feature row
  int32_t start;
  int32_t end;
  double start_logit;
  double end_logit;
};

// A growable byte buffer for the span texts: appends of short pieces are one
// fixed 16-byte copy (inlined, no library call, no size-dependent branches)
// when 16 bytes can be read from the source; Reserve keeps 16 bytes of slack.
class TextBuf {
 public:
  void Clear() { size_ = 0; }
  bool Empty() const { return size_ == 0; }
  void Reserve(size_t n) {
    if (size_ + n + 16 > cap_) Grow(size_ + n + 16);
  }
  // After Reserve: c and s fit.
  void Push(char c) { buf_[size_++] = c; }
  // `limit`: the end of the readable memory s lies in.
  void Append(std::string_view s, const char* limit) {
    if (s.size() <= 16 && limit - s.data() >= 16) {
      std::memcpy(buf_.get() + size_, s.data(), 16);
    } else {
      std::memcpy(buf_.get() + size_, s.data(), s.size());
    }
    size_ += s.size();
  }
  std::string_view View() const { return {buf_.get(), size_}; }

 private:
  void Grow(size_t need) {
    const size_t cap = std::max<size_t>({need, 2 * cap_, 256});
    std::unique_ptr<char[]> buf(new char[cap]);
    if (size_ > 0) std::memcpy(buf.get(), buf_.get(), size_);
    buf_ = std::move(buf);
    cap_ = cap;
  }
  std::unique_ptr<char[]> buf_;
  size_t size_ = 0, cap_ = 0;
};

// Per-thread working memory, reused across examples.
struct Workspace {
  std::vector<Prelim> prelim;
  std::vector<int32_t> starts, ends, valid_starts, valid_ends;
  TopKScratch topk;
  // Per token of feature plain_feature: 0 not yet known, 1 plain, 2 not (see PlainPiece).
  int64_t plain_feature = -1;
  std::vector<int8_t> plain_state;
  std::string final_text;
  std::string tok_text;  // the literal way (pieces that are not plain)
  TextBuf tok_buf, orig_buf;  // the fast way, and the span's basic tokens
  // The current example's " ".join(doc tokens), and per doc token its bytes
  // there and (once needed) its basic tokens, joined.
  std::string doc_joined;
  std::vector<size_t> doc_begin, doc_end;
  std::vector<std::string> basic_cache;
  std::vector<uint8_t> cached;
  // Per cached doc token: characters other than ' ' in its basic tokens /
  // in itself, -1 when not ASCII.
  std::vector<int64_t> basic_ns, doc_ns;
  // Which doc tokens doc_joined / basic_cache hold (SQuAD asks ~5 questions
  // per passage, and each example carries its own copy of the passage).
  bool doc_valid = false;
  int64_t doc_base = 0, doc_count = 0;
  BertTokenizer::Workspace tokenizer;
};

// The (start, end) logit arrays of type T.
template <typename T>
std::pair<const T*, const T*> Logits(const SquadInputs& in) {
  if constexpr (std::is_same_v<T, float>) {
    return {in.start_logits_f32, in.end_logits_f32};
  } else {
    return {in.start_logits, in.end_logits};
  }
}

// Decodes one example into `res`, whose buffers (n-best texts included) are
// reused from the previous call: no allocation once they are large enough.
template <typename T>
void DecodeExample(const SquadInputs& in, const SquadOptions& opt, int64_t example, int64_t f_begin,
                   int64_t f_end, Workspace& ws, ExampleResult& res) {
  res.prediction.clear();
  res.has_score_diff = false;
  res.score_diff = 0.0;
  res.log.clear();
  size_t count = 0;  // entries of res.nbest in use
  auto add = [&](std::string_view text, double start_logit, double end_logit) {
    if (count == res.nbest.size()) res.nbest.emplace_back();
    NbestEntry& x = res.nbest[count++];
    x.text.assign(text.data(), text.size());
    x.probability = 0.0;
    x.start_logit = start_logit;
    x.end_logit = end_logit;
  };
  std::vector<Prelim>& prelim = ws.prelim;
  std::vector<int32_t>& starts = ws.starts;
  std::vector<int32_t>& ends = ws.ends;
  prelim.clear();
  double score_null = 1000000;  // the seed's "large and positive" start
  int64_t min_null_feature = f_begin;
  double null_start = 0, null_end = 0;
  const auto [start_logits, end_logits] = Logits<T>(in);
  for (int64_t f = f_begin; f < f_end; ++f) {
    const T* sl = start_logits + f * in.seq_len;
    const T* el = end_logits + f * in.seq_len;
    const int64_t tb = in.token_splits[f];
    const int64_t ntok = in.token_splits[f + 1] - tb;
    BestIndexes(sl, in.seq_len, opt.n_best_size, &starts, &ws.topk);
    BestIndexes(el, in.seq_len, opt.n_best_size, &ends, &ws.topk);
    if (opt.version_2_with_negative) {
      const double feature_null = static_cast<double>(sl[0]) + static_cast<double>(el[0]);
      if (feature_null < score_null) {
        score_null = feature_null;
        min_null_feature = f;
        null_start = static_cast<double>(sl[0]);
        null_end = static_cast<double>(el[0]);
      }
    }
    // The seed's checks, hoisted: the ones on start alone and on end alone
    // filter the lists first (keeping their order), the pair checks stay.
    ws.valid_starts.clear();
    ws.valid_ends.clear();
    for (int32_t s : starts) {
      if (s < ntok && in.token_to_orig[tb + s] >= 0 && in.max_context[tb + s]) ws.valid_starts.push_back(s);
    }
    for (int32_t e : ends) {
      if (e < ntok && in.token_to_orig[tb + e] >= 0) ws.valid_ends.push_back(e);
    }
    for (int32_t s : ws.valid_starts) {
      for (int32_t e : ws.valid_ends) {
        if (e < s || e - s + 1 > opt.max_answer_length) continue;
        const double ls = static_cast<double>(sl[s]), le = static_cast<double>(el[e]);
        prelim.push_back(Prelim{ls + le, static_cast<int64_t>(prelim.size()), f, s, e, ls, le});
      }
    }
  }
  if (opt.version_2_with_negative) {
    prelim.push_back(Prelim{null_start + null_end, static_cast<int64_t>(prelim.size()),
                            min_null_feature, 0, 0, null_start, null_end});
  }
  // The seed's stable sort by descending score. Only the first few are
  // usually needed (n_best distinct texts), so sort a head first and the
  // rest only if the loop below runs past it.
  auto before = [](const Prelim& a, const Prelim& b) {
    return a.score > b.score || (a.score == b.score && a.order < b.order);
  };
  size_t sorted_end = std::min(prelim.size(), static_cast<size_t>(4 * opt.n_best_size + 8));
  std::partial_sort(prelim.begin(), prelim.begin() + static_cast<std::ptrdiff_t>(sorted_end),
                    prelim.end(), before);

  // Texts already in the n-best: its entries (a handful: a linear scan
  // beats hashing).
  auto seen_before = [&](std::string_view t) {
    for (size_t i = 0; i < count; ++i) {
      const std::string& x = res.nbest[i].text;
      if (x.size() == t.size() && x == t) return true;
    }
    return false;
  };
  const int64_t doc_base = in.doc_splits[example];
  const int64_t doc_count = in.doc_splits[example + 1] - doc_base;
  // orig_text of a span is a slice of " ".join(doc tokens), built once per
  // example on its first non-null candidate. The basic tokenization of
  // orig_text is the join of each doc token's basic tokens (the
  // BasicTokenizer splits on the spaces first and treats each piece alone),
  // so each doc token is tokenized once, when a span first needs it.
  // Reused from the previous example of this thread when its doc tokens are
  // the same strings (same bytes at the same token boundaries).
  auto same_doc = [&]() {
    if (!ws.doc_valid || ws.doc_count != doc_count) return false;
    if (ws.doc_base == doc_base) return true;
    const int64_t* a = in.doc_tokens.offsets + ws.doc_base;
    const int64_t* b = in.doc_tokens.offsets + doc_base;
    for (int64_t o = 1; o <= doc_count; ++o) {
      if (a[o] - a[0] != b[o] - b[0]) return false;
    }
    return in.doc_tokens.data.substr(static_cast<size_t>(a[0]), static_cast<size_t>(a[doc_count] - a[0])) ==
           in.doc_tokens.data.substr(static_cast<size_t>(b[0]), static_cast<size_t>(b[doc_count] - b[0]));
  };
  bool doc_ready = same_doc();
  if (doc_ready) ws.doc_base = doc_base;
  auto prepare_doc = [&]() {
    ws.doc_joined.clear();
    ws.doc_begin.resize(static_cast<size_t>(doc_count));
    ws.doc_end.resize(static_cast<size_t>(doc_count));
    for (int64_t o = 0; o < doc_count; ++o) {
      if (o > 0) ws.doc_joined.push_back(' ');
      const std::string_view t = in.doc_tokens.at(doc_base + o);
      ws.doc_begin[o] = ws.doc_joined.size();
      ws.doc_joined.append(t);
      ws.doc_end[o] = ws.doc_joined.size();
    }
    ws.cached.assign(static_cast<size_t>(doc_count), 0);
    ws.basic_ns.resize(static_cast<size_t>(doc_count));
    ws.doc_ns.resize(static_cast<size_t>(doc_count));
    ws.basic_cache.resize(static_cast<size_t>(doc_count));
    ws.doc_valid = true;
    ws.doc_base = doc_base;
    ws.doc_count = doc_count;
    doc_ready = true;
  };
  for (size_t k = 0; k < prelim.size(); ++k) {
    if (static_cast<int>(count) >= opt.n_best_size) break;
    if (k == sorted_end) {
      std::sort(prelim.begin() + static_cast<std::ptrdiff_t>(k), prelim.end(), before);
      sorted_end = prelim.size();
    }
    const Prelim& p = prelim[k];
    std::string& final_text = ws.final_text;  // reused buffer
    final_text.clear();
    if (p.start > 0) {
      const int64_t tb = in.token_splits[p.feature];
      // tok_text = " ".join(tokens).replace(" ##", "").replace("##", ""), then
      // " ".join(tok_text.split()). Fast path: each piece, once its leading
      // "##" is dropped, is non-empty without whitespace or '#' (PlainPiece); then
      // the replaces only drop those leading "##" (and the space before
      // them) and the split/join changes nothing. Else the literal way.
      bool simple = true;
      if (ws.plain_feature != p.feature) {
        ws.plain_state.assign(static_cast<size_t>(in.token_splits[p.feature + 1] - tb), 0);
        ws.plain_feature = p.feature;
      }
      const char* tokens_end = in.tokens.data.data() + in.tokens.data.size();
      TextBuf& buf = ws.tok_buf;
      buf.Clear();
      buf.Reserve(static_cast<size_t>(in.tokens.offsets[tb + p.end + 1] - in.tokens.offsets[tb + p.start]) +
                  static_cast<size_t>(p.end - p.start + 1));
      for (int32_t t = p.start; t <= p.end; ++t) {
        std::string_view piece = in.tokens.at(tb + t);
        const bool cont = piece.size() >= 2 && piece[0] == '#' && piece[1] == '#';
        if (cont) piece.remove_prefix(2);
        // plain or not, per token of the feature (spans overlap: computed once)
        int8_t& state = ws.plain_state[static_cast<size_t>(t)];
        if (state == 0) state = !piece.empty() && PlainPiece(piece) ? 1 : 2;
        simple &= state == 1;
        if (t > p.start && !cont) buf.Push(' ');
        buf.Append(piece, tokens_end);
      }
      std::string_view tok_text = buf.View();
      if (!simple) {
        std::string& literal = ws.tok_text;
        literal.clear();
        for (int32_t t = p.start; t <= p.end; ++t) {
          if (t > p.start) literal.push_back(' ');
          literal.append(in.tokens.at(tb + t));
        }
        RemoveAll(&literal, " ##");
        RemoveAll(&literal, "##");
        NormalizeSpacesInPlace(&literal);
        tok_text = literal;
      }
      // orig_tokens = doc_tokens[orig_doc_start:orig_doc_end + 1] (a Python slice)
      const int64_t o_begin = std::clamp<int64_t>(in.token_to_orig[tb + p.start], 0, doc_count);
      const int64_t o_end =
          std::clamp<int64_t>(int64_t{in.token_to_orig[tb + p.end]} + 1, 0, doc_count);
      if (!doc_ready) prepare_doc();
      std::string_view orig_text, orig_tok;
      bool ascii = true;
      int64_t tok_ns = 0, orig_ns = 0;  // characters other than ' ' in orig_tok / orig_text
      if (o_end > o_begin) {
        orig_text = std::string_view(ws.doc_joined)
                        .substr(ws.doc_begin[o_begin], ws.doc_end[o_end - 1] - ws.doc_begin[o_begin]);
        size_t bytes = 0;
        for (int64_t o = o_begin; o < o_end; ++o) {
          const auto oi = static_cast<size_t>(o);
          std::string& b = ws.basic_cache[oi];
          if (!ws.cached[oi]) {
            b.clear();
            const std::string_view doc_token = in.doc_tokens.at(doc_base + o);
            Basic(opt.do_lower_case).BasicTokenizeJoined(doc_token, &b, &ws.tokenizer);
            ws.cached[oi] = 1;
            ws.basic_ns[oi] = IsAscii(b) ? static_cast<int64_t>(b.size() - CountSpaces(b)) : -1;
            ws.doc_ns[oi] =
                IsAscii(doc_token) ? static_cast<int64_t>(doc_token.size() - CountSpaces(doc_token)) : -1;
          }
          ascii &= ws.basic_ns[oi] >= 0 && ws.doc_ns[oi] >= 0;
          tok_ns += ws.basic_ns[oi];
          orig_ns += ws.doc_ns[oi];
          bytes += b.size() + 1;
        }
        TextBuf& ob = ws.orig_buf;  // the non-empty basic tokens joined by ' '
        ob.Clear();
        ob.Reserve(bytes);
        for (int64_t o = o_begin; o < o_end; ++o) {
          const std::string& b = ws.basic_cache[static_cast<size_t>(o)];
          if (b.empty()) continue;
          if (!ob.Empty()) ob.Push(' ');
          ob.Append(b, b.data() + b.capacity() + 1);  // a std::string holds capacity() + 1 bytes
        }
        orig_tok = ob.View();
      }
      // ASCII span (the usual case): the non-space counts come from the cache
      std::vector<std::string>* log = opt.verbose ? &res.log : nullptr;
      if (ascii) {
        FinalTextAscii(tok_text, orig_text, orig_tok, static_cast<size_t>(tok_ns), static_cast<size_t>(orig_ns),
                       std::string::npos, log, &final_text);
      } else {
        final_text = FinalTextGivenTokens(tok_text, orig_text, orig_tok, log);
      }
      if (seen_before(final_text)) continue;
    }
    // (the null answer is kept even when "" is already there, as the seed does)
    add(final_text, p.start_logit, p.end_logit);
  }
  if (opt.version_2_with_negative && !seen_before(std::string_view())) add("", null_start, null_end);
  if (count == 0) add("empty", 0.0, 0.0);
  res.nbest.resize(count);

  // Softmax over the n-best, as the seed's _compute_softmax.
  double max_score = res.nbest[0].start_logit + res.nbest[0].end_logit;
  for (const auto& e : res.nbest) max_score = std::max(max_score, e.start_logit + e.end_logit);
  double total = 0.0;
  for (auto& e : res.nbest) {
    e.probability = std::exp((e.start_logit + e.end_logit) - max_score);
    total += e.probability;
  }
  for (auto& e : res.nbest) e.probability /= total;

  const NbestEntry* best_non_null = nullptr;
  for (const auto& e : res.nbest) {
    if (!e.text.empty()) {
      best_non_null = &e;
      break;
    }
  }
  if (!opt.version_2_with_negative) {
    res.prediction = res.nbest[0].text;
  } else if (best_non_null != nullptr) {
    res.has_score_diff = true;
    res.score_diff = score_null - best_non_null->start_logit - best_non_null->end_logit;
    res.prediction = res.score_diff > opt.null_score_diff_threshold ? "" : best_non_null->text;
  } else {
    res.has_score_diff = true;
    res.score_diff = score_null;
    res.prediction = "";
    if (opt.verbose) res.log.push_back("best_non_null_entry is None");
  }
}

}  // namespace

std::vector<int32_t> TopIndexes(const float* values, int64_t n, int k) {
  std::vector<int32_t> out;
  TopKScratch scratch;
  BestIndexes(values, n, k, &out, &scratch);
  return out;
}

std::string GetFinalText(std::string_view pred_text, std::string_view orig_text, bool do_lower_case,
                         std::vector<std::string>* log) {
  std::string tok;
  Basic(do_lower_case).BasicTokenizeJoined(orig_text, &tok);
  return FinalTextGivenTokens(pred_text, orig_text, tok, log);
}

void FinalTextAscii(std::string_view pred_text, std::string_view orig_text, std::string_view tok,
                    size_t tok_ns, size_t orig_ns, size_t found, std::vector<std::string>* log,
                    std::string* out) {
  // Characters are bytes: the seed's steps with counts of ' ' (vectorizable).
  auto fail = [&](std::string message) {
    if (log) log->push_back(std::move(message));
    out->assign(orig_text);
  };
  // The span is exactly the basic tokens of its doc tokens (the common case):
  // the whole original text, stripped of ' ' at its ends.
  if (found == std::string::npos && !pred_text.empty() && pred_text.size() == tok.size() &&
      orig_ns == tok_ns && tok.front() != ' ' && tok.back() != ' ' && pred_text == tok) {
    const size_t a = orig_text.find_first_not_of(' '), b = orig_text.find_last_not_of(' ');
    out->assign(orig_text.substr(a, b + 1 - a));
    return;
  }
  if (found == std::string::npos) found = tok.find(pred_text);
  if (found == std::string::npos) {
    return fail("Unable to find text: '" + std::string(pred_text) + "' in '" + std::string(orig_text) + "'");
  }
  if (orig_ns != tok_ns) return fail(LengthMismatch(orig_text, tok, log));
  if (found >= tok.size() || tok[found] == ' ') return fail("Couldn't map start position");
  if (pred_text.empty()) return fail("Couldn't map end position");
  const size_t last = found + pred_text.size() - 1;
  if (tok[last] == ' ') return fail("Couldn't map end position");
  const size_t spaces_before_start = CountSpaces(tok.substr(0, found));
  const size_t ns_start = found - spaces_before_start;
  const size_t ns_end = last - spaces_before_start - CountSpaces(tok.substr(found, last - found));
  const size_t orig_start = NthNonSpace(orig_text, ns_start);
  if (orig_start >= orig_text.size()) {  // the seed's empty slice
    out->clear();
    return;
  }
  // ns_end >= ns_start: continue from orig_start
  const size_t orig_end = orig_start + NthNonSpace(orig_text.substr(orig_start), ns_end - ns_start);
  out->assign(orig_text.substr(orig_start, orig_end + 1 - orig_start));
}

std::string FinalTextGivenTokens(std::string_view pred_text, std::string_view orig_text,
                                 std::string_view tok, std::vector<std::string>* log) {
  // The seed's algorithm on Python characters, done on UTF-8 bytes: UTF-8 is
  // self-synchronizing, so a byte match of the needle is a character match,
  // and the only character _strip_spaces removes is the ASCII ' '.
  auto fail = [&](std::string message) {
    if (log) log->push_back(std::move(message));
    return std::string(orig_text);
  };
  const size_t found = tok.find(pred_text);
  if (found == std::string::npos) {
    return fail("Unable to find text: '" + std::string(pred_text) + "' in '" + std::string(orig_text) + "'");
  }
  auto is_lead = [](char c) { return !IsContinuationByte(static_cast<uint8_t>(c)); };
  if (IsAscii(tok) && IsAscii(orig_text)) {
    std::string out;
    FinalTextAscii(pred_text, orig_text, tok, tok.size() - CountSpaces(tok),
                   orig_text.size() - CountSpaces(orig_text), found, log, &out);
    return out;
  }
  // start_position: the first character of the match (none when tok is empty);
  // end_position: its last character (start - 1 for an empty pred).
  const bool start_ok = found < tok.size() && tok[found] != ' ';
  size_t last = found + (pred_text.empty() ? 0 : pred_text.size() - 1);
  while (last > found && !is_lead(tok[last])) --last;
  const bool end_ok = !pred_text.empty() && last < tok.size() && tok[last] != ' ';
  // One pass over each text: non-space character counts (_strip_spaces) and
  // the non-space indexes of the match's first and last characters.
  size_t tok_ns = 0, ns_start = 0, ns_end = 0;
  for (size_t i = 0; i < tok.size(); ++i) {
    if (i == found) ns_start = tok_ns;
    if (i == last) ns_end = tok_ns;
    tok_ns += is_lead(tok[i]) && tok[i] != ' ';
  }
  size_t orig_ns = 0, orig_start = orig_text.size(), orig_end = orig_text.size();
  for (size_t i = 0; i < orig_text.size(); ++i) {
    if (is_lead(orig_text[i]) && orig_text[i] != ' ') {
      if (orig_ns == ns_start) orig_start = i;
      if (orig_ns == ns_end) orig_end = i;
      ++orig_ns;
    }
  }
  if (orig_ns != tok_ns) return fail(LengthMismatch(orig_text, tok, log));
  if (!start_ok) return fail("Couldn't map start position");
  if (!end_ok) return fail("Couldn't map end position");
  if (orig_end < orig_start) return std::string();  // an empty Python slice
  ++orig_end;
  while (orig_end < orig_text.size() && !is_lead(orig_text[orig_end])) ++orig_end;
  return std::string(orig_text.substr(orig_start, orig_end - orig_start));
}

namespace {

std::vector<int64_t> FirstFeatures(const SquadInputs& in) {
  // Features of example e: [first[e], first[e + 1]) (features are grouped by example).
  std::vector<int64_t> first(static_cast<size_t>(in.num_examples) + 1, 0);
  std::vector<int64_t> count(static_cast<size_t>(in.num_examples), 0);
  for (int64_t f = 0; f < in.num_features; ++f) ++count[static_cast<size_t>(in.feature_example[f])];
  for (int64_t e = 0; e < in.num_examples; ++e) first[e + 1] = first[e] + count[e];
  return first;
}

}  // namespace

struct Decoder::State {
  Workspace ws;
};

Decoder::Decoder(const SquadInputs& in, const SquadOptions& options)
    : in_(in), options_(options), first_(FirstFeatures(in)), state_(std::make_unique<State>()) {}

Decoder::~Decoder() = default;

void Decoder::Decode(int64_t example, ExampleResult* out) {
  const int64_t b = first_[static_cast<size_t>(example)], e = first_[static_cast<size_t>(example) + 1];
  if (in_.start_logits_f32 != nullptr) {
    DecodeExample<float>(in_, options_, example, b, e, state_->ws, *out);
  } else {
    DecodeExample<double>(in_, options_, example, b, e, state_->ws, *out);
  }
}

std::vector<ExampleResult> Postprocess(const SquadInputs& in, const SquadOptions& options) {
  std::vector<ExampleResult> results(static_cast<size_t>(in.num_examples));
  std::atomic<int64_t> next{0};
  constexpr int64_t kBlock = 16;
  auto work = [&]() {
    Decoder decoder(in, options);
    while (true) {
      const int64_t b = next.fetch_add(kBlock);
      if (b >= in.num_examples) return;
      for (int64_t e = b; e < std::min(b + kBlock, in.num_examples); ++e) {
        decoder.Decode(e, &results[static_cast<size_t>(e)]);
      }
    }
  };
  const int threads = std::max(1, std::min<int>(options.num_threads,
                                                 static_cast<int>((in.num_examples + kBlock - 1) / kBlock)));
  run_workers(threads, work);
  return results;
}

}  // namespace squad
}  // namespace pybert
