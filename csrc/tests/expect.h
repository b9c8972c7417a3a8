// Shared by the ctest programs: record a failed expectation, report at the end.
#pragma once

#include <iostream>
#include <string>

namespace pybert_test {

inline int failures = 0;

inline void Expect(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::cerr << "FAIL: " << what << "\n";
  }
}

// Exit status for main(): 0 when every expectation held.
inline int Finish(const char* name) {
  if (failures) {
    std::cerr << name << ": " << failures << " failure(s)\n";
    return 1;
  }
  std::cout << name << ": all passed\n";
  return 0;
}

}  // namespace pybert_test
