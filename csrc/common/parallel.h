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

// launch(threads, guarded) runs guarded() on up to `threads` threads and returns
// when all have returned; guarded() is work() with its first exception kept,
// then rethrown here. run_workers starts the threads; other launchers (the
// TensorFlow op's intra-op pool, attention_cpu.h's Runner) bring their own.
template <typename Launch, typename Work>
void run_guarded(int threads, Launch&& launch, Work&& work) {
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
  launch(threads, guarded);
  if (error) std::rethrow_exception(error);
}

template <typename Work>
void run_workers(int threads, Work&& work) {
  run_guarded(threads, [](int n, const auto& guarded) {
    std::vector<std::thread> pool;
    if (n > 1) {
      try {
        pool.reserve(static_cast<size_t>(n - 1));
        for (int t = 1; t < n; ++t) pool.emplace_back(guarded);
      } catch (const std::system_error&) {
        // fewer threads: the counter hands their items to the others
      } catch (const std::bad_alloc&) {
      }
    }
    guarded();
    for (auto& th : pool) th.join();
  }, work);
}

}  // namespace pybert
