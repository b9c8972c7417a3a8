// The pybert._C extension module: one PYBIND11_MODULE calling each binding's
// init function. Needs no TensorFlow.
#include <pybind11/pybind11.h>

namespace pybert {
void InitTokenizer(pybind11::module_& m);
void InitSquad(pybind11::module_& m);
void InitData(pybind11::module_& m);
}  // namespace pybert

PYBIND11_MODULE(_C, m) {
  m.doc() = "pybert native core: WordPiece tokenizer, SQuAD n-best decoding, BERT pre-training data";
  pybert::InitTokenizer(m);
  pybert::InitSquad(m);
  pybert::InitData(m);
}
