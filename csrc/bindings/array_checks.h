// Argument checks shared by the pybind11 bindings: NumPy arrays as C-contiguous
// typed views, 1-D shape checks and ragged-split checks, each error naming the
// argument (raised as ValueError in Python).
#ifndef PYBERT_BINDINGS_ARRAY_CHECKS_H_
#define PYBERT_BINDINGS_ARRAY_CHECKS_H_

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

namespace pybert {

template <typename T>
using Array = pybind11::array_t<T, pybind11::array::c_style | pybind11::array::forcecast>;

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
