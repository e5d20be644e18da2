// EXPECT(cond) for the C++ tests: prints the failed condition and counts it in `failures`
// (each test returns EXIT_FAILURE when it is not zero).
#pragma once

#include <cstdio>

static int failures = 0;

#define EXPECT(cond)                                                         \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::fprintf(stderr, "%s:%d: FAILED %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                            \
    }                                                                        \
  } while (0)
