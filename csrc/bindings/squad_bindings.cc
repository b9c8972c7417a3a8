// pybind11 glue for csrc/squad: checks every array's dtype, shape and
// consistency (naming the argument), releases the GIL around decoding, and
// builds the seed's output dicts.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "bindings/array_checks.h"
#include "squad/postprocess.h"

namespace py = pybind11;

namespace pybert {
namespace {

py::list SquadPostprocess(py::bytes doc_data, py::handle doc_offsets_in, py::handle doc_splits_in,
                          py::handle feature_example_in, py::bytes token_data,
                          py::handle token_offsets_in, py::handle token_splits_in,
                          py::handle token_to_orig_in, py::handle max_context_in,
                          py::handle start_in, py::handle end_in, int n_best_size,
                          int max_answer_length, bool do_lower_case, bool version_2_with_negative,
                          double null_score_diff_threshold, bool verbose, int num_threads) {
  if (n_best_size < 1) throw py::value_error("n_best_size must be >= 1, got " + std::to_string(n_best_size));
  if (max_answer_length < 1) {
    throw py::value_error("max_answer_length must be >= 1, got " + std::to_string(max_answer_length));
  }
  if (num_threads < 1) throw py::value_error("num_threads must be >= 1");
  // Integer arrays must hold their values exactly in the kernel's types (no wrap).
  const Array<int64_t> doc_offsets = ExactIntArray<int64_t>(doc_offsets_in, "doc_offsets");
  const Array<int64_t> doc_splits = ExactIntArray<int64_t>(doc_splits_in, "doc_splits");
  const Array<int64_t> feature_example = ExactIntArray<int64_t>(feature_example_in, "feature_example");
  const Array<int64_t> token_offsets = ExactIntArray<int64_t>(token_offsets_in, "token_offsets");
  const Array<int64_t> token_splits = ExactIntArray<int64_t>(token_splits_in, "token_splits");
  const Array<int32_t> token_to_orig = ExactIntArray<int32_t>(token_to_orig_in, "token_to_orig");
  const Array<uint8_t> max_context = ExactIntArray<uint8_t>(max_context_in, "max_context");
  squad::SquadInputs in;
  std::string_view docs = doc_data, toks = token_data;
  in.num_examples = doc_splits.ndim() == 1 ? doc_splits.shape(0) - 1 : -1;
  if (in.num_examples < 0) throw py::value_error("doc_splits must be 1-D with num_examples + 1 entries");
  in.doc_splits = Check1D(doc_splits, "doc_splits", -1);
  const int64_t num_doc_tokens = doc_offsets.ndim() == 1 ? doc_offsets.shape(0) - 1 : -1;
  if (num_doc_tokens < 0) throw py::value_error("doc_offsets must be 1-D with count + 1 entries");
  in.doc_tokens = squad::StringList{docs, Check1D(doc_offsets, "doc_offsets", -1)};
  CheckSplits(in.doc_tokens.offsets, num_doc_tokens, static_cast<int64_t>(docs.size()), "doc_offsets");
  CheckSplits(in.doc_splits, in.num_examples, num_doc_tokens, "doc_splits");
  in.num_features = feature_example.ndim() == 1 ? feature_example.shape(0) : -1;
  in.feature_example = Check1D(feature_example, "feature_example", -1);
  in.token_splits = Check1D(token_splits, "token_splits", in.num_features + 1);
  const int64_t num_tokens = token_offsets.ndim() == 1 ? token_offsets.shape(0) - 1 : -1;
  if (num_tokens < 0) throw py::value_error("token_offsets must be 1-D with count + 1 entries");
  in.tokens = squad::StringList{toks, Check1D(token_offsets, "token_offsets", -1)};
  CheckSplits(in.tokens.offsets, num_tokens, static_cast<int64_t>(toks.size()), "token_offsets");
  CheckSplits(in.token_splits, in.num_features, num_tokens, "token_splits");
  in.token_to_orig = Check1D(token_to_orig, "token_to_orig", num_tokens);
  in.max_context = Check1D(max_context, "max_context", num_tokens);
  for (int64_t f = 0; f < in.num_features; ++f) {
    const int64_t e = in.feature_example[f];
    if (e < 0 || e >= in.num_examples) {
      throw py::value_error("feature_example[" + std::to_string(f) + "] = " + std::to_string(e) +
                            " is not an example index");
    }
    if (f > 0 && e < in.feature_example[f - 1]) {
      throw py::value_error("features must be grouped by example in example order");
    }
    const int64_t ndoc = in.doc_splits[e + 1] - in.doc_splits[e];
    int32_t top = -1;  // branch-free maximum
    for (int64_t t = in.token_splits[f]; t < in.token_splits[f + 1]; ++t) top = std::max(top, in.token_to_orig[t]);
    if (top >= ndoc) {
      throw py::value_error("token_to_orig of feature " + std::to_string(f) + " points past the " +
                            std::to_string(ndoc) + " doc tokens of its example");
    }
  }
  // float32 logits (what a model gives) are read as they are; anything else
  // is converted to float64.
  const bool f32 = py::isinstance<py::array_t<float>>(start_in) && py::isinstance<py::array_t<float>>(end_in);
  Array<float> start32, end32;
  Array<double> start64, end64;
  py::array start_logits, end_logits;
  if (f32) {
    start32 = RealArray<float>(start_in, "start_logits");
    end32 = RealArray<float>(end_in, "end_logits");
    start_logits = start32;
    end_logits = end32;
  } else {
    start64 = RealArray<double>(start_in, "start_logits");
    end64 = RealArray<double>(end_in, "end_logits");
    start_logits = start64;
    end_logits = end64;
  }
  if (start_logits.ndim() != 2 || end_logits.ndim() != 2 || start_logits.shape(0) != in.num_features ||
      end_logits.shape(0) != in.num_features || start_logits.shape(1) != end_logits.shape(1)) {
    throw py::value_error("start_logits and end_logits must both be [num_features=" +
                          std::to_string(in.num_features) + ", seq_len]");
  }
  in.seq_len = start_logits.shape(1);
  if (in.num_features > 0 && in.seq_len < 1) {
    // position 0 ([CLS]) is read for every feature (the null score)
    throw py::value_error("start_logits and end_logits must have seq_len >= 1, got 0");
  }
  auto check_finite = [&](const auto* s, const auto* e) {
    // x - x is 0 for finite x and NaN for NaN or inf: one pass without branches
    // per feature, the message only on failure.
    for (int64_t f = 0; f < in.num_features; ++f) {
      const auto* sf = s + f * in.seq_len;
      const auto* ef = e + f * in.seq_len;
      std::remove_cv_t<std::remove_reference_t<decltype(*s)>> acc = 0;
      for (int64_t i = 0; i < in.seq_len; ++i) acc += (sf[i] - sf[i]) + (ef[i] - ef[i]);
      if (acc != 0) {
        throw py::value_error("logits of feature " + std::to_string(f) + " are not finite (NaN or inf)");
      }
    }
  };
  if (f32) {
    in.start_logits_f32 = start32.data();
    in.end_logits_f32 = end32.data();
    check_finite(in.start_logits_f32, in.end_logits_f32);
  } else {
    in.start_logits = start64.data();
    in.end_logits = end64.data();
    check_finite(in.start_logits, in.end_logits);
  }
  squad::SquadOptions options;
  options.n_best_size = n_best_size;
  options.max_answer_length = max_answer_length;
  options.do_lower_case = do_lower_case;
  options.version_2_with_negative = version_2_with_negative;
  options.null_score_diff_threshold = null_score_diff_threshold;
  options.verbose = verbose;
  options.num_threads = num_threads;
  // Per example: (prediction, nbest list of dicts, score_diff or None, log messages (list, or an empty tuple)),
  // built with the C API: this is most of the Python-visible cost.
  auto str = [](const std::string& t) {
    unsigned char high = 0;
    for (char c : t) high |= static_cast<unsigned char>(c);
    if (high < 0x80) {  // ASCII (most answers): a compact str filled in place, no decoding
      PyObject* o = PyUnicode_New(static_cast<Py_ssize_t>(t.size()), 127);
      if (o == nullptr) throw py::error_already_set();
      std::memcpy(PyUnicode_DATA(o), t.data(), t.size());
      return py::reinterpret_steal<py::object>(o);
    }
    // surrogatepass: texts may hold lone surrogates that came from a Python str
    PyObject* o = PyUnicode_DecodeUTF8(t.data(), static_cast<Py_ssize_t>(t.size()), "surrogatepass");
    if (o == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(o);
  };
  py::str k_text("text"), k_prob("probability"), k_start("start_logit"), k_end("end_logit");
  py::list out(static_cast<size_t>(in.num_examples));
  const py::tuple no_log;
  auto build = [&](size_t e, const squad::ExampleResult& r) {
    PyObject* nbest = PyList_New(static_cast<Py_ssize_t>(r.nbest.size()));
    if (nbest == nullptr) throw py::error_already_set();
    py::object nbest_obj = py::reinterpret_steal<py::object>(nbest);
    for (size_t i = 0; i < r.nbest.size(); ++i) {
      py::dict d;
      PyObject* dp = d.ptr();
      py::object text = str(r.nbest[i].text);
      py::object prob = py::reinterpret_steal<py::object>(PyFloat_FromDouble(r.nbest[i].probability));
      py::object sl = py::reinterpret_steal<py::object>(PyFloat_FromDouble(r.nbest[i].start_logit));
      py::object el = py::reinterpret_steal<py::object>(PyFloat_FromDouble(r.nbest[i].end_logit));
      if (!prob || !sl || !el || PyDict_SetItem(dp, k_text.ptr(), text.ptr()) ||
          PyDict_SetItem(dp, k_prob.ptr(), prob.ptr()) || PyDict_SetItem(dp, k_start.ptr(), sl.ptr()) ||
          PyDict_SetItem(dp, k_end.ptr(), el.ptr())) {
        throw py::error_already_set();
      }
      // Only str and float values: nothing for the cycle collector to do
      // here (CPython untracks such dicts itself, later; dict insertion
      // re-tracks it if a container is ever stored in it).
      PyObject_GC_UnTrack(dp);
      PyList_SET_ITEM(nbest, static_cast<Py_ssize_t>(i), d.release().ptr());
    }
    py::object log = no_log;  // shared: most questions log nothing
    if (!r.log.empty()) {
      py::list messages;
      for (const auto& m : r.log) messages.append(str(m));
      log = std::move(messages);
    }
    out[e] = py::make_tuple(str(r.prediction), nbest_obj,
                            r.has_score_diff ? py::object(py::float_(r.score_diff)) : py::object(py::none()),
                            std::move(log));
  };
  if (num_threads == 1) {
    // One thread: each example's objects are built right after it is decoded,
    // into one reused result (its texts still in cache, nothing stored).
    squad::Decoder decoder(in, options);
    squad::ExampleResult r;
    for (int64_t e = 0; e < in.num_examples; ++e) {
      decoder.Decode(e, &r);
      build(static_cast<size_t>(e), r);
    }
  } else {
    std::vector<squad::ExampleResult> results;
    {
      py::gil_scoped_release release;
      results = squad::Postprocess(in, options);
    }
    for (size_t e = 0; e < results.size(); ++e) build(e, results[e]);
  }
  return out;
}

std::string FinalText(const std::string& pred_text, const std::string& orig_text, bool do_lower_case) {
  return squad::GetFinalText(pred_text, orig_text, do_lower_case, nullptr);
}

}  // namespace

void InitSquad(py::module_& m) {
  m.def("squad_postprocess", &SquadPostprocess, py::arg("doc_data"), py::arg("doc_offsets"),
        py::arg("doc_splits"), py::arg("feature_example"), py::arg("token_data"),
        py::arg("token_offsets"), py::arg("token_splits"), py::arg("token_to_orig"),
        py::arg("max_context"), py::arg("start_logits"), py::arg("end_logits"),
        py::arg("n_best_size"), py::arg("max_answer_length"), py::arg("do_lower_case"),
        py::arg("version_2_with_negative"), py::arg("null_score_diff_threshold"), py::arg("verbose"),
        py::arg("num_threads"));
  m.def("squad_final_text", &FinalText, py::arg("pred_text"), py::arg("orig_text"),
        py::arg("do_lower_case"));
}

}  // namespace pybert
