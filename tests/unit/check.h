/*
 * check: the one assertion macro every unit test uses. A failed CHECK
 * prints where and why (the first CHECK_SHOWN of them: a randomised test
 * can fail thousands of times) and the test goes on, so one run reports
 * every failure; main() prints "N passed, N failed" and exits non-zero on
 * any failure.
 */
#ifndef TAILFENCE_TEST_CHECK_H
#define TAILFENCE_TEST_CHECK_H

#include <stdio.h>

#define CHECK_SHOWN 50

static int passed, failed;

#define CHECK(cond, ...)                                                    \
	do {                                                                \
		if (cond) {                                                 \
			passed++;                                           \
		} else {                                                    \
			if (failed++ < CHECK_SHOWN) {                       \
				printf("FAIL %s:%d: ", __FILE__, __LINE__); \
				printf(__VA_ARGS__);                        \
				printf("\n");                               \
			}                                                   \
		}                                                           \
	} while (0)

#endif
