// The one thread pool of the C++ cores: runs work() on up to `threads`
// threads, the calling thread being one of them. work() must take its items
// from a shared counter, so that any number of threads covers them all.
//
// Nothing escapes a worker thread (an exception there would call
// std::terminate and take the Python process with it): the first exception
// any thread throws is rethrown in the caller after every thread has joined.
// A thread the system refuses to start (std::system_error, e.g. under a
// memory or process limit) leaves its share to the threads already running.
#pragma once

#include <cstddef>
#include <exception>
#include <mutex>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

namespace pybert {

template <typename Work>
void run_workers(int threads, Work&& work) {
  std::mutex mu;
  std::exception_ptr error;
  auto guarded = [&]() {
    try {
      work();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu);
      if (!error) error = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  if (threads > 1) {
    try {
      pool.reserve(static_cast<size_t>(threads - 1));
      for (int t = 1; t < threads; ++t) pool.emplace_back(guarded);
    } catch (const std::system_error&) {
      // fewer threads: the counter hands their items to the others
    } catch (const std::bad_alloc&) {
    }
  }
  guarded();
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace pybert
