// pybind11 glue for csrc/data: checks every array's dtype, shape and splits
// (naming the argument), releases the GIL around instance creation and
// tf.train.Example encoding, and hands the results to NumPy without copies.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bindings/array_checks.h"
#include "data/example_proto.h"
#include "data/pretraining.h"

namespace py = pybind11;

namespace pybert {
namespace {


// A vector handed to NumPy as the memory of an array (freed with it).
template <typename T>
py::array_t<T> ToNumpy(std::vector<T>&& v, std::vector<py::ssize_t> shape) {
  auto* owned = new std::vector<T>(std::move(v));
  py::capsule free_when_done(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(shape, owned->data(), free_when_done);
}

// Python's random.Random(seed) takes any int; the generator here takes 0 <= seed < 2**64
// (CPython seeds with the 32-bit words of the value, which PyRandom reproduces).
// Integer-like objects (NumPy integers too) go through operator.index.
uint64_t SeedOf(const py::handle& seed) {
  PyObject* index = PyNumber_Index(seed.ptr());
  if (index == nullptr) {
    PyErr_Clear();
    throw py::type_error(std::string("seed must be an int, got ") + Py_TYPE(seed.ptr())->tp_name);
  }
  py::object value_obj = py::reinterpret_steal<py::object>(index);
  const unsigned long long value = PyLong_AsUnsignedLongLong(value_obj.ptr());
  if (value == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error("seed must be an int in [0, 2**64), got " + py::repr(seed).cast<std::string>());
  }
  return static_cast<uint64_t>(value);
}

py::dict CreatePretrainingInstances(const py::array& sentence_ids, const py::array& sentence_splits,
                                    const py::array& document_splits, const py::array& is_subword,
                                    const py::object& seed, int max_seq_length,
                                    int max_predictions_per_seq, double masked_lm_prob,
                                    double short_seq_prob, int dupe_factor, bool do_whole_word_mask,
                                    int max_ngram_size, int32_t cls_id, int32_t sep_id,
                                    int32_t mask_id) {
  const uint64_t seed_value = SeedOf(seed);
  // Ids as int64 first when they are wider than int32, so that a huge id is
  // reported instead of wrapping around in the cast.
  Array<int32_t> ids32;
  {
    Check1D(sentence_ids, "sentence_ids", -1);
    if (sentence_ids.dtype().kind() == 'i' && sentence_ids.itemsize() <= 4) {
      ids32 = ExactIntArray<int32_t>(sentence_ids, "sentence_ids");
    } else {
      Array<int64_t> wide = ExactIntArray<int64_t>(sentence_ids, "sentence_ids");
      const int64_t* w = wide.data();
      for (py::ssize_t t = 0; t < wide.shape(0); ++t) {
        if (w[t] < 0 || w[t] > INT32_MAX) {
          throw py::value_error("sentence_ids[" + std::to_string(t) + "] = " + std::to_string(w[t]) +
                                " is not a valid token id");
        }
      }
      ids32 = ExactIntArray<int32_t>(wide, "sentence_ids");
    }
  }
  Check1D(sentence_splits, "sentence_splits", -1);
  Check1D(document_splits, "document_splits", -1);
  Check1D(is_subword, "is_subword", -1);
  if (sentence_splits.shape(0) < 1) {
    throw py::value_error("sentence_splits must have num_sentences + 1 entries");
  }
  if (document_splits.shape(0) < 2) {
    throw py::value_error("document_splits must have num_documents + 1 entries with at least one document");
  }
  Array<int64_t> sent = ExactIntArray<int64_t>(sentence_splits, "sentence_splits");
  Array<int64_t> docs = ExactIntArray<int64_t>(document_splits, "document_splits");
  Array<uint8_t> subword = ExactIntArray<uint8_t>(is_subword, "is_subword");
  if (is_subword.shape(0) < 1 || is_subword.shape(0) > INT32_MAX) {
    throw py::value_error("is_subword must have one entry per vocabulary token (1 to 2**31 - 1), got " +
                          std::to_string(is_subword.shape(0)));
  }

  data::Documents in;
  in.token_ids = ids32.data();
  in.num_tokens = ids32.shape(0);
  in.sentence_splits = sent.data();
  in.num_sentences = sent.shape(0) - 1;
  in.document_splits = docs.data();
  in.num_documents = docs.shape(0) - 1;
  CheckSplits(in.sentence_splits, in.num_sentences, in.num_tokens, "sentence_splits");
  CheckSplits(in.document_splits, in.num_documents, in.num_sentences, "document_splits");

  data::PretrainingOptions o;
  o.max_seq_length = max_seq_length;
  o.max_predictions_per_seq = max_predictions_per_seq;
  o.masked_lm_prob = masked_lm_prob;
  o.short_seq_prob = short_seq_prob;
  o.dupe_factor = dupe_factor;
  o.do_whole_word_mask = do_whole_word_mask;
  o.max_ngram_size = max_ngram_size;
  o.cls_id = cls_id;
  o.sep_id = sep_id;
  o.mask_id = mask_id;
  o.vocab_size = static_cast<int32_t>(is_subword.shape(0));

  data::PretrainingInstances result;
  {
    // The core's std::invalid_argument (bad options or ids) reaches Python as
    // ValueError through pybind11's standard translation.
    py::gil_scoped_release release;
    result = data::CreatePretrainingInstances(in, subword.data(), seed_value, o);
  }
  const py::ssize_t n = result.num_instances, L = result.max_seq_length, P = result.max_predictions_per_seq;
  py::dict out;
  out["input_ids"] = ToNumpy(std::move(result.input_ids), {n, L});
  out["input_mask"] = ToNumpy(std::move(result.input_mask), {n, L});
  out["segment_ids"] = ToNumpy(std::move(result.segment_ids), {n, L});
  out["masked_lm_positions"] = ToNumpy(std::move(result.masked_lm_positions), {n, P});
  out["masked_lm_ids"] = ToNumpy(std::move(result.masked_lm_ids), {n, P});
  out["masked_lm_weights"] = ToNumpy(std::move(result.masked_lm_weights), {n, P});
  out["next_sentence_labels"] = ToNumpy(std::move(result.next_sentence_labels), {n});
  return out;
}

// ---- tf.train.Example encoding (csrc/data/example_proto) -------------------

py::list SerializeExamples(py::handle columns_in) {
  // A tuple snapshot: converting an item (its __array__) may run Python code that
  // changes the caller's list while the loop walks it.
  PyObject* snapshot = PySequence_Tuple(columns_in.ptr());
  if (snapshot == nullptr) throw py::error_already_set();
  const py::tuple columns = py::reinterpret_steal<py::tuple>(snapshot);
  std::vector<data::FeatureColumn> cols;
  std::vector<py::array> keep;  // owns contiguous copies while encoding
  int64_t rows = -1;
  for (py::handle item : columns) {
    if (!PyTuple_Check(item.ptr()) || PyTuple_GET_SIZE(item.ptr()) != 2) {
      throw py::value_error("columns must be (name, array) pairs");
    }
    auto pair = py::reinterpret_borrow<py::tuple>(item);
    if (!PyUnicode_Check(pair[0].ptr())) {
      throw py::type_error(std::string("a feature name must be a str, got ") +
                           Py_TYPE(pair[0].ptr())->tp_name);
    }
    data::FeatureColumn c;
    Py_ssize_t name_size = 0;
    const char* name = PyUnicode_AsUTF8AndSize(pair[0].ptr(), &name_size);
    if (name == nullptr) throw py::error_already_set();  // e.g. a lone surrogate
    c.name.assign(name, static_cast<size_t>(name_size));
    py::array raw = py::array::ensure(pair[1]);
    if (!raw) throw py::value_error("feature " + c.name + ": not an array");
    py::array arr;
    const char kind = raw.dtype().kind();
    if (kind == 'f') {
      arr = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(raw);
      c.source = data::FeatureColumn::Source::kFloat32;
    } else if ((kind == 'i' || kind == 'u' || kind == 'b') && raw.itemsize() <= 4 && kind != 'u') {
      arr = py::array_t<int32_t, py::array::c_style | py::array::forcecast>::ensure(raw);
      c.source = data::FeatureColumn::Source::kInt32;
    } else if (kind == 'i' || kind == 'u' || kind == 'b') {
      if (kind == 'u' && raw.itemsize() >= 8) {
        throw py::value_error("feature " + c.name + ": uint64 values do not fit int64");
      }
      arr = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(raw);
      c.source = data::FeatureColumn::Source::kInt64;
    } else {
      throw py::value_error("feature " + c.name + ": dtype " +
                            py::str(raw.dtype()).cast<std::string>() +
                            " is not an integer or float type");
    }
    if (arr.ndim() != 1 && arr.ndim() != 2) {
      throw py::value_error("feature " + c.name + " must be 1-D [rows] or 2-D [rows, width], got " +
                            std::to_string(arr.ndim()) + " dims");
    }
    const int64_t n = arr.shape(0);
    c.width = arr.ndim() == 2 ? arr.shape(1) : 1;
    if (c.width < 1) throw py::value_error("feature " + c.name + " has width 0");
    if (rows >= 0 && n != rows) {
      throw py::value_error("feature " + c.name + " has " + std::to_string(n) + " rows, expected " +
                            std::to_string(rows) + " like the first column");
    }
    rows = n;
    c.data = arr.data();
    keep.push_back(arr);
    cols.push_back(std::move(c));
  }
  if (cols.empty()) throw py::value_error("columns must not be empty");
  // Map entries sorted by name: protobuf's deterministic serialization, so the bytes equal
  // tf.train.Example.SerializeToString(deterministic=True).
  std::stable_sort(cols.begin(), cols.end(), [](const data::FeatureColumn& x,
                                               const data::FeatureColumn& y) {
    return x.name < y.name;
  });
  for (size_t i = 1; i < cols.size(); ++i) {
    if (cols[i].name == cols[i - 1].name) throw py::value_error("feature " + cols[i].name + " repeats");
  }
  std::vector<std::string> out;
  {
    py::gil_scoped_release release;
    out = data::SerializeExamples(cols, 0, rows);
  }
  py::list result(out.size());
  for (size_t i = 0; i < out.size(); ++i) {
    PyObject* bytes = PyBytes_FromStringAndSize(out[i].data(), static_cast<Py_ssize_t>(out[i].size()));
    if (bytes == nullptr) throw py::error_already_set();
    PyList_SET_ITEM(result.ptr(), static_cast<Py_ssize_t>(i), bytes);
    std::string().swap(out[i]);  // keep the peak memory near one copy
  }
  return result;
}

}  // namespace

void InitData(py::module_& m) {
  m.def("create_pretraining_instances", &CreatePretrainingInstances, py::arg("sentence_ids"),
        py::arg("sentence_splits"), py::arg("document_splits"), py::arg("is_subword"), py::arg("seed"),
        py::arg("max_seq_length"), py::arg("max_predictions_per_seq"), py::arg("masked_lm_prob"),
        py::arg("short_seq_prob"), py::arg("dupe_factor"), py::arg("do_whole_word_mask"),
        py::arg("max_ngram_size"), py::arg("cls_id"), py::arg("sep_id"), py::arg("mask_id"),
        "The seed's create_training_instances on token ids, draw for draw with "
        "random.Random(seed); a dict of padded arrays in the final (shuffled) order.");
  m.def("serialize_examples", &SerializeExamples, py::arg("columns"),
        "Serializes rows of (name, array [rows] or [rows, width]) columns as tf.train.Example "
        "bytes: integer arrays become Int64List features, float arrays FloatList (float32); "
        "map entries sorted by name (protobuf's deterministic serialization).");
}

}  // namespace pybert
