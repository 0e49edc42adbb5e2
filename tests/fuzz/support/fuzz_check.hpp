#pragma once

// What the fuzz targets share: a failed property aborts with a message, which
// libFuzzer reports as a crash and saves the input that caused it.

#include <cstdio>
#include <cstdlib>

/// Aborts with `what` when `cond` is false: a property the target checks.
#define CAIRN_FUZZ_CHECK(cond, what)                                                               \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      std::fprintf(stderr, "fuzz property failed: %s (%s:%d)\n", what, __FILE__, __LINE__);        \
      std::abort();                                                                                \
    }                                                                                              \
  } while (false)
