#include "data/example_proto.h"

#include <cstring>

namespace pybert {
namespace data {
namespace {

constexpr uint8_t kLenTag1 = (1 << 3) | 2;  // field 1, length-delimited
constexpr uint8_t kLenTag2 = (2 << 3) | 2;
constexpr uint8_t kLenTag3 = (3 << 3) | 2;

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

void PutVarint(uint64_t v, std::string* out) {
  char buf[10];
  size_t n = 0;
  while (v >= 0x80) {
    buf[n++] = static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  buf[n++] = static_cast<char>(v);
  out->append(buf, n);
}

// Negative int64 values are encoded as their 64-bit two's complement (10 bytes), as protobuf does.
uint64_t AsVarint(int64_t v) { return static_cast<uint64_t>(v); }

int64_t ValueAt(const FeatureColumn& c, int64_t i) {
  if (c.source == FeatureColumn::Source::kInt32) return static_cast<const int32_t*>(c.data)[i];
  return static_cast<const int64_t*>(c.data)[i];
}

// Size of the packed payload of one row of an integer column.
size_t PackedIntSize(const FeatureColumn& c, int64_t row) {
  size_t n = 0;
  for (int64_t k = 0; k < c.width; ++k) n += VarintSize(AsVarint(ValueAt(c, row * c.width + k)));
  return n;
}

// Feature message size (the bytes after the map entry's value tag and length).
size_t FeatureSize(size_t payload) {
  const size_t list = 1 + VarintSize(payload) + payload;  // value tag + len + packed payload
  return 1 + VarintSize(list) + list;                      // kind tag + len + list message
}

}  // namespace

void AppendExample(const std::vector<FeatureColumn>& columns, int64_t row, std::string* out) {
  // Sizes first (protobuf lengths precede their messages), then one pass of writes.
  thread_local std::vector<size_t> payloads, entries;
  payloads.resize(columns.size());
  entries.resize(columns.size());
  size_t features_size = 0;
  for (size_t i = 0; i < columns.size(); ++i) {
    const FeatureColumn& c = columns[i];
    payloads[i] = c.source == FeatureColumn::Source::kFloat32 ? 4 * static_cast<size_t>(c.width)
                                                              : PackedIntSize(c, row);
    const size_t feature = FeatureSize(payloads[i]);
    entries[i] = 1 + VarintSize(c.name.size()) + c.name.size() + 1 + VarintSize(feature) + feature;
    features_size += 1 + VarintSize(entries[i]) + entries[i];
  }
  out->reserve(out->size() + 1 + VarintSize(features_size) + features_size);
  out->push_back(static_cast<char>(kLenTag1));  // Example.features
  PutVarint(features_size, out);
  for (size_t i = 0; i < columns.size(); ++i) {
    const FeatureColumn& c = columns[i];
    const bool is_float = c.source == FeatureColumn::Source::kFloat32;
    out->push_back(static_cast<char>(kLenTag1));  // Features.feature map entry
    PutVarint(entries[i], out);
    out->push_back(static_cast<char>(kLenTag1));  // entry key
    PutVarint(c.name.size(), out);
    out->append(c.name);
    out->push_back(static_cast<char>(kLenTag2));  // entry value: Feature
    const size_t payload = payloads[i];
    const size_t list = 1 + VarintSize(payload) + payload;
    PutVarint(1 + VarintSize(list) + list, out);
    out->push_back(static_cast<char>(is_float ? kLenTag2 : kLenTag3));  // float_list / int64_list
    PutVarint(list, out);
    out->push_back(static_cast<char>(kLenTag1));  // packed values
    PutVarint(payload, out);
    if (is_float) {
      const char* p = static_cast<const char*>(c.data) + 4 * row * c.width;
      out->append(p, 4 * static_cast<size_t>(c.width));  // little-endian fixed32, like protobuf
    } else {
      for (int64_t k = 0; k < c.width; ++k) PutVarint(AsVarint(ValueAt(c, row * c.width + k)), out);
    }
  }
}

std::vector<std::string> SerializeExamples(const std::vector<FeatureColumn>& columns,
                                           int64_t begin, int64_t end) {
  std::vector<std::string> out(static_cast<size_t>(end > begin ? end - begin : 0));
  for (int64_t r = begin; r < end; ++r) AppendExample(columns, r, &out[static_cast<size_t>(r - begin)]);
  return out;
}

}  // namespace data
}  // namespace pybert
