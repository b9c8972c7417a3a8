// pybind11 glue for csrc/tokenizer: converts Python strings to UTF-8 views,
// validates arguments (naming them), releases the GIL around the core, and
// turns results into NumPy int32 arrays.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/parallel.h"
#include "tokenizer/encoding.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_tables.h"
#include "tokenizer/vocab.h"

namespace py = pybind11;

namespace pybert {
namespace {

// UTF-8 view of a Python str. Lone surrogates (legal in a str, not in UTF-8)
// are encoded with "surrogatepass" so that every Python character is kept
// and offsets still count Python characters; `keep` owns such bytes.
std::string_view Utf8Of(PyObject* obj, const char* arg, Py_ssize_t index,
                        std::vector<py::object>* keep) {
  if (!PyUnicode_Check(obj)) {
    std::string where = index >= 0 ? std::string(arg) + "[" + std::to_string(index) + "]" : arg;
    throw py::type_error(where + " must be str, got " + Py_TYPE(obj)->tp_name);
  }
  // offsets are int32 character positions
  if (PyUnicode_GET_LENGTH(obj) > INT32_MAX) {
    std::string where = index >= 0 ? std::string(arg) + "[" + std::to_string(index) + "]" : arg;
    throw py::value_error(where + " has " + std::to_string(PyUnicode_GET_LENGTH(obj)) +
                          " characters; at most 2**31 - 1 are supported");
  }
  Py_ssize_t size = 0;
  const char* data = PyUnicode_AsUTF8AndSize(obj, &size);
  if (data != nullptr) return std::string_view(data, static_cast<size_t>(size));
  PyErr_Clear();
  PyObject* bytes = PyUnicode_AsEncodedString(obj, "utf-8", "surrogatepass");
  if (bytes == nullptr) throw py::error_already_set();
  keep->push_back(py::reinterpret_steal<py::object>(bytes));
  return std::string_view(PyBytes_AS_STRING(bytes), static_cast<size_t>(PyBytes_GET_SIZE(bytes)));
}

std::vector<std::string_view> Utf8List(py::handle seq, const char* arg,
                                       std::vector<py::object>* keep) {
  if (!PyList_Check(seq.ptr()) && !PyTuple_Check(seq.ptr())) {
    throw py::type_error(std::string(arg) + " must be a list or tuple of str, got " +
                         Py_TYPE(seq.ptr())->tp_name);
  }
  // The views outlive the GIL (the core runs without it), so they must not
  // point into objects that another thread can free by changing the list:
  // a tuple of the items (the same tuple for a tuple) holds a reference to
  // each str for the whole call.
  PyObject* fast = PySequence_Tuple(seq.ptr());
  if (fast == nullptr) throw py::error_already_set();
  keep->push_back(py::reinterpret_steal<py::object>(fast));
  const Py_ssize_t n = PyTuple_GET_SIZE(fast);
  PyObject** items = PySequence_Fast_ITEMS(fast);
  std::vector<std::string_view> out;
  out.reserve(static_cast<size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) out.push_back(Utf8Of(items[i], arg, i, keep));
  return out;
}

Truncation ParseTruncation(const std::string& s) {
  if (s == "longest_first") return Truncation::kLongestFirst;
  if (s == "only_first") return Truncation::kOnlyFirst;
  if (s == "only_second") return Truncation::kOnlySecond;
  throw py::value_error("truncation must be 'longest_first', 'only_first' or 'only_second', got '" +
                        s + "'");
}

template <typename T>
py::array_t<T> Empty(std::vector<py::ssize_t> shape) {
  return py::array_t<T>(shape);
}

// Runs fn(chunk_index) for every chunk on up to num_threads threads (no GIL).
template <typename Fn>
void ParallelChunks(size_t num_chunks, int num_threads, Fn fn) {
  const size_t threads = std::min<size_t>(std::max(num_threads, 1), num_chunks);
  std::atomic<size_t> next{0};
  run_workers(static_cast<int>(threads), [&]() {
    for (size_t c = next.fetch_add(1); c < num_chunks; c = next.fetch_add(1)) fn(c);
  });
}

class PyTokenizer {
 public:
  PyTokenizer(py::bytes vocab_data, const std::string& source, bool lower_case,
              int32_t max_input_chars_per_word, const std::string& unk_token, bool split_on_punc) {
    std::string_view data = vocab_data;
    TokenizerOptions options;
    options.lower_case = lower_case;
    options.max_input_chars_per_word = max_input_chars_per_word;
    options.unk_token = unk_token;
    options.split_on_punc = split_on_punc;
    if (max_input_chars_per_word <= 0) {
      throw py::value_error("max_input_chars_per_word must be positive, got " +
                            std::to_string(max_input_chars_per_word));
    }
    tokenizer_ = std::make_unique<BertTokenizer>(Vocab::FromText(data, source), options);
  }

  // Word-piece ids and [begin, end) offsets of one text (no special tokens).
  py::tuple Encode(py::handle text) const {
    std::vector<py::object> keep;
    std::string_view s = Utf8Of(text.ptr(), "text", -1, &keep);
    std::vector<int32_t> ids, offsets;
    {
      py::gil_scoped_release release;
      tokenizer_->Encode(s, PieceSink{&ids, &offsets});
    }
    py::array_t<int32_t> ids_arr(static_cast<py::ssize_t>(ids.size()));
    py::array_t<int32_t> off_arr({static_cast<py::ssize_t>(ids.size()), py::ssize_t{2}});
    std::memcpy(ids_arr.mutable_data(), ids.data(), ids.size() * sizeof(int32_t));
    std::memcpy(off_arr.mutable_data(), offsets.data(), offsets.size() * sizeof(int32_t));
    return py::make_tuple(ids_arr, off_arr);
  }

  // The words as str; a lone surrogate of the input comes back as itself ("surrogatepass").
  py::list BasicTokenize(py::handle text) const {
    std::vector<py::object> keep;
    std::string_view s = Utf8Of(text.ptr(), "text", -1, &keep);
    std::vector<std::string> words;
    {
      py::gil_scoped_release release;
      words = tokenizer_->BasicTokenize(s);
    }
    py::list out(words.size());
    for (size_t i = 0; i < words.size(); ++i) {
      PyObject* word = PyUnicode_DecodeUTF8(words[i].data(),
                                            static_cast<Py_ssize_t>(words[i].size()),
                                            "surrogatepass");
      if (word == nullptr) throw py::error_already_set();
      PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), word);
    }
    return out;
  }

  std::vector<int32_t> Wordpiece(py::handle word) const {
    std::vector<py::object> keep;
    std::string_view s = Utf8Of(word.ptr(), "word", -1, &keep);
    return tokenizer_->WordpieceIds(s);
  }

  py::dict EncodeBatch(py::handle texts, py::handle pairs, int32_t max_seq_length,
                       const std::string& truncation, bool add_special_tokens, bool offsets,
                       bool pad, int num_threads, bool empty_pair_as_single) const {
    if (num_threads < 1) {
      throw py::value_error("num_threads must be >= 1, got " + std::to_string(num_threads));
    }
    if (max_seq_length < -1) {
      throw py::value_error("max_seq_length must be positive or None, got " +
                            std::to_string(max_seq_length));
    }
    std::vector<py::object> keep;
    std::vector<std::string_view> a = Utf8List(texts, "texts", &keep);
    std::vector<std::string_view> b;
    const bool has_pairs = !pairs.is_none();
    if (has_pairs) {
      b = Utf8List(pairs, "text_pairs", &keep);
      if (b.size() != a.size()) {
        throw py::value_error("text_pairs has " + std::to_string(b.size()) +
                              " items but texts has " + std::to_string(a.size()));
      }
    }
    EncodeOptions options;
    options.max_seq_length = max_seq_length;
    options.truncation = ParseTruncation(truncation);
    options.add_special_tokens = add_special_tokens;
    options.offsets = offsets;
    options.empty_pair_as_single = empty_pair_as_single;
    std::vector<EncodedRows> chunks;
    {
      py::gil_scoped_release release;
      chunks = pybert::EncodeBatch(*tokenizer_, a, has_pairs ? &b : nullptr, options, num_threads);
    }
    const size_t n = a.size();
    std::vector<size_t> row_base(chunks.size() + 1, 0), tok_base(chunks.size() + 1, 0);
    size_t max_len = 0;
    for (size_t c = 0; c < chunks.size(); ++c) {
      const auto& rs = chunks[c].row_splits;
      const size_t rows = rs.empty() ? 0 : rs.size() - 1;
      row_base[c + 1] = row_base[c] + rows;
      tok_base[c + 1] = tok_base[c] + chunks[c].ids.size();
      for (size_t r = 0; r < rows; ++r) {
        max_len = std::max<size_t>(max_len, static_cast<size_t>(rs[r + 1] - rs[r]));
      }
    }
    const size_t total = tok_base.back();
    const size_t width = max_seq_length >= 0 ? static_cast<size_t>(max_seq_length) : max_len;
    const auto N = static_cast<py::ssize_t>(n), T = static_cast<py::ssize_t>(total),
               W = static_cast<py::ssize_t>(width);
    auto flat_ids = Empty<int32_t>({T});
    auto flat_types = Empty<int32_t>({T});
    auto row_splits = Empty<int64_t>({N + 1});
    py::array_t<int32_t> flat_offsets, pad_ids, pad_mask, pad_types, pad_offsets;
    if (offsets) flat_offsets = Empty<int32_t>({T, 2});
    if (pad) {
      pad_ids = Empty<int32_t>({N, W});
      pad_mask = Empty<int32_t>({N, W});
      pad_types = Empty<int32_t>({N, W});
      if (offsets) pad_offsets = Empty<int32_t>({N, W, 2});
    }
    int32_t* fi = flat_ids.mutable_data();
    int32_t* ft = flat_types.mutable_data();
    int64_t* rsp = row_splits.mutable_data();
    int32_t* fo = offsets ? flat_offsets.mutable_data() : nullptr;
    int32_t* pi = pad ? pad_ids.mutable_data() : nullptr;
    int32_t* pm = pad ? pad_mask.mutable_data() : nullptr;
    int32_t* pt = pad ? pad_types.mutable_data() : nullptr;
    int32_t* po = (pad && offsets) ? pad_offsets.mutable_data() : nullptr;
    rsp[0] = 0;
    {
      py::gil_scoped_release release;
      ParallelChunks(chunks.size(), num_threads, [&](size_t c) {
        const EncodedRows& ch = chunks[c];
        const size_t tb = tok_base[c];
        std::copy(ch.ids.begin(), ch.ids.end(), fi + tb);
        std::copy(ch.type_ids.begin(), ch.type_ids.end(), ft + tb);
        if (fo) std::copy(ch.offsets.begin(), ch.offsets.end(), fo + 2 * tb);
        const size_t rows = ch.row_splits.empty() ? 0 : ch.row_splits.size() - 1;
        for (size_t r = 0; r < rows; ++r) {
          const size_t row = row_base[c] + r;
          const auto begin = static_cast<size_t>(ch.row_splits[r]);
          const auto len = static_cast<size_t>(ch.row_splits[r + 1]) - begin;
          rsp[row + 1] = static_cast<int64_t>(tb + begin + len);
          if (!pi) continue;
          int32_t* ri = pi + row * width;
          int32_t* rm = pm + row * width;
          int32_t* rt = pt + row * width;
          std::copy_n(ch.ids.data() + begin, len, ri);
          std::fill(ri + len, ri + width, 0);
          std::fill(rm, rm + len, 1);
          std::fill(rm + len, rm + width, 0);
          std::copy_n(ch.type_ids.data() + begin, len, rt);
          std::fill(rt + len, rt + width, 0);
          if (po) {
            int32_t* ro = po + 2 * row * width;
            std::copy_n(ch.offsets.data() + 2 * begin, 2 * len, ro);
            std::fill(ro + 2 * len, ro + 2 * width, 0);
          }
        }
      });
    }
    py::dict out;
    out["flat_ids"] = flat_ids;
    out["flat_type_ids"] = flat_types;
    out["row_splits"] = row_splits;
    if (offsets) out["flat_offsets"] = flat_offsets;
    if (pad) {
      out["input_word_ids"] = pad_ids;
      out["input_mask"] = pad_mask;
      out["input_type_ids"] = pad_types;
      if (offsets) out["offsets"] = pad_offsets;
    }
    return out;
  }

  std::vector<std::string> Tokens() const { return tokenizer_->vocab().tokens(); }
  size_t VocabSize() const { return tokenizer_->vocab().size(); }
  int32_t TokenToId(const std::string& token) const { return tokenizer_->vocab().Find(token); }

 private:
  std::unique_ptr<BertTokenizer> tokenizer_;
};

}  // namespace

void InitTokenizer(py::module_& m) {
  py::register_exception<VocabError>(m, "VocabError", PyExc_ValueError);
  py::register_exception<EncodeError>(m, "EncodeError", PyExc_ValueError);
  m.attr("unicode_version") = py::str(static_cast<const char*>(unicode::kUnicodeVersion));
  py::class_<PyTokenizer>(m, "WordpieceTokenizer")
      .def(py::init<py::bytes, const std::string&, bool, int32_t, const std::string&, bool>(),
           py::arg("vocab_data"), py::arg("source"), py::arg("lower_case") = true,
           py::arg("max_input_chars_per_word") = 400, py::arg("unk_token") = "[UNK]",
           py::arg("split_on_punc") = true)
      .def("encode", &PyTokenizer::Encode, py::arg("text"))
      .def("basic_tokenize", &PyTokenizer::BasicTokenize, py::arg("text"))
      .def("wordpiece", &PyTokenizer::Wordpiece, py::arg("word"))
      .def("encode_batch", &PyTokenizer::EncodeBatch, py::arg("texts"), py::arg("text_pairs"),
           py::arg("max_seq_length"), py::arg("truncation"), py::arg("add_special_tokens"),
           py::arg("offsets"), py::arg("pad"), py::arg("num_threads"),
           py::arg("empty_pair_as_single") = false)
      .def("tokens", &PyTokenizer::Tokens)
      .def("vocab_size", &PyTokenizer::VocabSize)
      .def("token_to_id", &PyTokenizer::TokenToId, py::arg("token"));
}

}  // namespace pybert
