/*
 * test.h: the few macros the proxy's unit tests share.  Each test binary
 * prints "ok N - name" or "not ok N - name" per check and ends with
 * "N passed, M failed"; it exits non-zero when a check failed.
 */
#ifndef PULSE_TEST_H
#define PULSE_TEST_H

#include <stdio.h>
#include <string.h>

static int test_passed, test_failed;

#define CHECK(cond, name)                                                                                                          \
    do {                                                                                                                           \
        if (cond) {                                                                                                                \
            test_passed++;                                                                                                         \
            printf("ok %d - %s\n", test_passed + test_failed, name);                                                               \
        } else {                                                                                                                   \
            test_failed++;                                                                                                         \
            printf("not ok %d - %s (%s:%d: %s)\n", test_passed + test_failed, name, __FILE__, __LINE__, #cond);                    \
        }                                                                                                                          \
    } while (0)

#define CHECK_STR(got, want, name)                                                                                                 \
    do {                                                                                                                           \
        const char *got_ = (got), *want_ = (want);                                                                                 \
        CHECK(got_ != NULL && strcmp(got_, want_) == 0, name);                                                                     \
        if (got_ == NULL || strcmp(got_, want_) != 0)                                                                              \
            printf("#   got:  %s\n#   want: %s\n", got_ != NULL ? got_ : "(null)", want_);                                         \
    } while (0)

#define TEST_DONE()                                                                                                                \
    do {                                                                                                                           \
        printf("%d passed, %d failed\n", test_passed, test_failed);                                                                \
        return test_failed == 0 ? 0 : 1;                                                                                           \
    } while (0)

#endif
