#include "squad/postprocess.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <memory>
#include <thread>
#include <unordered_set>

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

// str.replace(old, "") on UTF-8 (old is ASCII).
std::string RemoveAll(const std::string& s, std::string_view old) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (true) {
    size_t hit = s.find(old, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    pos = hit + old.size();
  }
  out.append(s, pos, std::string::npos);
  return out;
}

// " ".join(text.split()) (which also strips).
std::string NormalizeSpaces(const std::string& text) {
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

// Top-n indexes by descending score, ties to the lower index (a stable sort).
void BestIndexes(const double* logits, int64_t n, int k, std::vector<int32_t>* out) {
  out->resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) (*out)[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  const size_t keep = std::min<size_t>(static_cast<size_t>(k), out->size());
  std::partial_sort(out->begin(), out->begin() + static_cast<std::ptrdiff_t>(keep), out->end(),
                    [&](int32_t a, int32_t b) {
                      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
                    });
  out->resize(keep);
}

struct Prelim {
  int64_t feature;  // global feature row
  int32_t start;
  int32_t end;
  double start_logit;
  double end_logit;
};

ExampleResult DecodeExample(const SquadInputs& in, const SquadOptions& opt, int64_t example,
                            int64_t f_begin, int64_t f_end) {
  ExampleResult res;
  std::vector<Prelim> prelim;
  std::vector<int32_t> starts, ends;
  double score_null = 1000000;  // the seed's "large and positive" start
  int64_t min_null_feature = f_begin;
  double null_start = 0, null_end = 0;
  for (int64_t f = f_begin; f < f_end; ++f) {
    const double* sl = in.start_logits + f * in.seq_len;
    const double* el = in.end_logits + f * in.seq_len;
    const int64_t tb = in.token_splits[f];
    const int64_t ntok = in.token_splits[f + 1] - tb;
    BestIndexes(sl, in.seq_len, opt.n_best_size, &starts);
    BestIndexes(el, in.seq_len, opt.n_best_size, &ends);
    if (opt.version_2_with_negative) {
      const double feature_null = sl[0] + el[0];
      if (feature_null < score_null) {
        score_null = feature_null;
        min_null_feature = f;
        null_start = sl[0];
        null_end = el[0];
      }
    }
    for (int32_t s : starts) {
      for (int32_t e : ends) {
        if (s >= ntok || e >= ntok) continue;
        if (in.token_to_orig[tb + s] < 0 || in.token_to_orig[tb + e] < 0) continue;
        if (!in.max_context[tb + s]) continue;
        if (e < s) continue;
        if (e - s + 1 > opt.max_answer_length) continue;
        prelim.push_back(Prelim{f, s, e, sl[s], el[e]});
      }
    }
  }
  if (opt.version_2_with_negative) {
    prelim.push_back(Prelim{min_null_feature, 0, 0, null_start, null_end});
  }
  std::stable_sort(prelim.begin(), prelim.end(), [](const Prelim& a, const Prelim& b) {
    return (a.start_logit + a.end_logit) > (b.start_logit + b.end_logit);
  });

  std::unordered_set<std::string> seen;
  const int64_t doc_base = in.doc_splits[example];
  const int64_t doc_count = in.doc_splits[example + 1] - doc_base;
  for (const Prelim& p : prelim) {
    if (static_cast<int>(res.nbest.size()) >= opt.n_best_size) break;
    std::string final_text;
    if (p.start > 0) {
      const int64_t tb = in.token_splits[p.feature];
      std::string tok_text;
      for (int32_t t = p.start; t <= p.end; ++t) {
        if (t > p.start) tok_text.push_back(' ');
        tok_text.append(in.tokens.at(tb + t));
      }
      tok_text = NormalizeSpaces(RemoveAll(RemoveAll(tok_text, " ##"), "##"));
      // orig_tokens = doc_tokens[orig_doc_start:orig_doc_end + 1] (a Python slice)
      int64_t o_begin = std::clamp<int64_t>(in.token_to_orig[tb + p.start], 0, doc_count);
      int64_t o_end = std::clamp<int64_t>(int64_t{in.token_to_orig[tb + p.end]} + 1, 0, doc_count);
      std::string orig_text;
      for (int64_t o = o_begin; o < o_end; ++o) {
        if (o > o_begin) orig_text.push_back(' ');
        orig_text.append(in.doc_tokens.at(doc_base + o));
      }
      final_text = GetFinalText(tok_text, orig_text, opt.do_lower_case,
                                opt.verbose ? &res.log : nullptr);
      if (!seen.insert(final_text).second) continue;
    } else {
      seen.insert(final_text);
    }
    res.nbest.push_back(NbestEntry{std::move(final_text), 0.0, p.start_logit, p.end_logit});
  }
  if (opt.version_2_with_negative && seen.count("") == 0) {
    res.nbest.push_back(NbestEntry{"", 0.0, null_start, null_end});
  }
  if (res.nbest.empty()) res.nbest.push_back(NbestEntry{"empty", 0.0, 0.0, 0.0});

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
  return res;
}

}  // namespace

std::string GetFinalText(std::string_view pred_text, std::string_view orig_text, bool do_lower_case,
                         std::vector<std::string>* log) {
  std::string tok_joined;
  for (const std::string& t : Basic(do_lower_case).BasicTokenize(orig_text)) {
    if (!tok_joined.empty()) tok_joined.push_back(' ');
    tok_joined += t;
  }
  const std::u32string tok = Decode(tok_joined);
  const std::u32string pred = Decode(pred_text);
  const std::u32string orig = Decode(orig_text);
  auto fail = [&](std::string message) {
    if (log) log->push_back(std::move(message));
    return std::string(orig_text);
  };
  const auto found = std::search(tok.begin(), tok.end(), pred.begin(), pred.end());
  if (found == tok.end() && !pred.empty()) {
    return fail("Unable to find text: '" + std::string(pred_text) + "' in '" + std::string(orig_text) + "'");
  }
  const int64_t start_position = found - tok.begin();
  const int64_t end_position = start_position + static_cast<int64_t>(pred.size()) - 1;
  // _strip_spaces: drop ' ' and map each kept character to its position.
  auto strip = [](const std::u32string& s, std::u32string* ns, std::vector<int64_t>* ns_to_s) {
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == U' ') continue;
      ns_to_s->push_back(static_cast<int64_t>(i));
      ns->push_back(s[i]);
    }
  };
  std::u32string orig_ns, tok_ns;
  std::vector<int64_t> orig_map, tok_map;
  strip(orig, &orig_ns, &orig_map);
  strip(tok, &tok_ns, &tok_map);
  if (orig_ns.size() != tok_ns.size()) {
    return fail("Length not equal after stripping spaces: '" + Encode(orig_ns.data(), orig_ns.size()) +
                "' vs '" + Encode(tok_ns.data(), tok_ns.size()) + "'");
  }
  // tok_s_to_ns: position in tok -> index among non-space characters (-1: a space).
  std::vector<int64_t> tok_s_to_ns(tok.size(), -1);
  for (size_t i = 0; i < tok_map.size(); ++i) tok_s_to_ns[static_cast<size_t>(tok_map[i])] = static_cast<int64_t>(i);
  auto project = [&](int64_t pos) -> int64_t {
    if (pos < 0 || pos >= static_cast<int64_t>(tok.size())) return -1;
    const int64_t ns = tok_s_to_ns[static_cast<size_t>(pos)];
    if (ns < 0 || ns >= static_cast<int64_t>(orig_map.size())) return -1;
    return orig_map[static_cast<size_t>(ns)];
  };
  const int64_t orig_start = project(start_position);
  if (orig_start < 0) return fail("Couldn't map start position");
  const int64_t orig_end = project(end_position);
  if (orig_end < 0) return fail("Couldn't map end position");
  if (orig_end < orig_start) return std::string();  // an empty Python slice
  return Encode(orig.data() + orig_start, static_cast<size_t>(orig_end - orig_start + 1));
}

std::vector<ExampleResult> Postprocess(const SquadInputs& in, const SquadOptions& options) {
  std::vector<ExampleResult> results(static_cast<size_t>(in.num_examples));
  // Features of example e: [first[e], first[e + 1]) (features are grouped by example).
  std::vector<int64_t> first(static_cast<size_t>(in.num_examples) + 1, 0);
  {
    std::vector<int64_t> count(static_cast<size_t>(in.num_examples), 0);
    for (int64_t f = 0; f < in.num_features; ++f) ++count[static_cast<size_t>(in.feature_example[f])];
    for (int64_t e = 0; e < in.num_examples; ++e) first[e + 1] = first[e] + count[e];
  }
  std::atomic<int64_t> next{0};
  constexpr int64_t kBlock = 16;
  auto work = [&]() {
    while (true) {
      const int64_t b = next.fetch_add(kBlock);
      if (b >= in.num_examples) return;
      for (int64_t e = b; e < std::min(b + kBlock, in.num_examples); ++e) {
        results[static_cast<size_t>(e)] = DecodeExample(in, options, e, first[e], first[e + 1]);
      }
    }
  };
  const int threads = std::max(1, std::min<int>(options.num_threads,
                                                 static_cast<int>((in.num_examples + kBlock - 1) / kBlock)));
  if (threads <= 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(work);
    work();
    for (auto& th : pool) th.join();
  }
  return results;
}

}  // namespace squad
}  // namespace pybert
