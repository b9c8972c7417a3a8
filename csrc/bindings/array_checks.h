// Argument checks shared by the pybind11 bindings: NumPy arrays as C-contiguous
// typed views, 1-D shape checks and ragged-split checks, each error naming the
// argument (raised as ValueError in Python).
#ifndef PYBERT_BINDINGS_ARRAY_CHECKS_H_
#define PYBERT_BINDINGS_ARRAY_CHECKS_H_

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

namespace pybert {

template <typename T>
using Array = pybind11::array_t<T, pybind11::array::c_style | pybind11::array::forcecast>;

// obj as a NumPy array whose dtype kind is one of `kinds`; otherwise a ValueError
// "<name> must be <what>" (naming the dtype when obj is an array).
inline pybind11::array ArrayOfKinds(const pybind11::handle& obj, const char* name,
                                    const char* kinds, const char* what) {
  namespace py = pybind11;
  py::array a = py::array::ensure(obj);
  if (!a) {
    PyErr_Clear();
    throw py::value_error(std::string(name) + " must be " + what);
  }
  if (std::strchr(kinds, a.dtype().kind()) == nullptr) {
    throw py::value_error(std::string(name) + " must be " + what + ", got dtype " +
                          py::str(a.dtype()).cast<std::string>());
  }
  return a;
}

// obj as a C-contiguous array of the integer type T: an integer (or bool) dtype is
// required, and values that T cannot hold are an error (a plain forcecast would
// wrap int64 2**32 to 0 in int32, or 256 to 0 in uint8, without a word).
template <typename T>
Array<T> ExactIntArray(const pybind11::handle& obj, const char* name) {
  static_assert(std::is_integral<T>::value, "integer element types only");
  namespace py = pybind11;
  const py::array a = ArrayOfKinds(obj, name, "iub", "an integer array");
  Array<T> out = Array<T>::ensure(a);
  if (!out) throw py::error_already_set();
  py::module_ np = py::module_::import("numpy");
  const bool safe = py::cast<bool>(np.attr("can_cast")(a.dtype(), py::dtype::of<T>(), "safe"));
  if (!safe && !py::cast<bool>(np.attr("array_equal")(out, a))) {
    throw py::value_error(std::string(name) + " has values outside the range of " +
                          py::str(py::dtype::of<T>()).cast<std::string>());
  }
  return out;
}

// obj as a C-contiguous array of the floating type T, from a real (float, integer
// or bool) dtype: complex, string and object arrays are an error.
template <typename T>
Array<T> RealArray(const pybind11::handle& obj, const char* name) {
  static_assert(std::is_floating_point<T>::value, "floating element types only");
  const pybind11::array a = ArrayOfKinds(obj, name, "fiub", "a real numeric array");
  Array<T> out = Array<T>::ensure(a);
  if (!out) throw pybind11::error_already_set();
  return out;
}

inline void Check1D(const pybind11::array& a, const char* name, int64_t size) {
  if (a.ndim() != 1 || (size >= 0 && a.shape(0) != size)) {
    throw pybind11::value_error(
        std::string(name) + " must be 1-D" +
        (size >= 0 ? " of length " + std::to_string(size) : std::string()) + ", got shape with " +
        std::to_string(a.ndim()) + " dims" +
        (a.ndim() >= 1 ? " and length " + std::to_string(a.shape(0)) : std::string()));
  }
}

// The typed form returns the data pointer.
template <typename T>
const T* Check1D(const Array<T>& a, const char* name, int64_t size) {
  Check1D(static_cast<const pybind11::array&>(a), name, size);
  return a.data();
}

// s[0..n] must run from 0 to total without decreasing.
inline void CheckSplits(const int64_t* s, int64_t n, int64_t total, const char* name) {
  if (s[0] != 0 || s[n] != total) {
    throw pybind11::value_error(std::string(name) + " must start at 0 and end at " +
                                std::to_string(total) + ", got " + std::to_string(s[0]) +
                                " and " + std::to_string(s[n]));
  }
  bool ok = true;  // one pass without branches, the index only on failure
  for (int64_t i = 0; i < n; ++i) ok &= s[i + 1] >= s[i];
  if (ok) return;
  for (int64_t i = 0; i < n; ++i) {
    if (s[i + 1] < s[i]) {
      throw pybind11::value_error(std::string(name) + " must be non-decreasing (at index " +
                                  std::to_string(i + 1) + ")");
    }
  }
}

}  // namespace pybert

#endif  // PYBERT_BINDINGS_ARRAY_CHECKS_H_
