/*
 * A minimal unit-test harness: CHECK records a failure and goes on,
 * REQUIRE stops the current test. gw_test_main runs the listed tests and
 * prints "N passed, N failed"; the exit code is non-zero on any failure.
 */
#ifndef GW_TEST_H
#define GW_TEST_H

#include <stdio.h>
#include <string.h>

static int gw_test_failures;
static int gw_test_checks;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        gw_test_checks++;                                                                          \
        if (!(cond)) {                                                                             \
            gw_test_failures++;                                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *gw_a_ = (a), *gw_b_ = (b);                                                     \
        gw_test_checks++;                                                                          \
        if (!gw_a_ || !gw_b_ || strcmp(gw_a_, gw_b_) != 0) {                                       \
            gw_test_failures++;                                                                    \
            fprintf(stderr, "%s:%d: CHECK_STR failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__,     \
                    gw_a_ ? gw_a_ : "(null)", gw_b_ ? gw_b_ : "(null)");                           \
        }                                                                                          \
    } while (0)

#define CHECK_INT(a, b)                                                                            \
    do {                                                                                           \
        long long gw_a_ = (long long)(a), gw_b_ = (long long)(b);                                  \
        gw_test_checks++;                                                                          \
        if (gw_a_ != gw_b_) {                                                                      \
            gw_test_failures++;                                                                    \
            fprintf(stderr, "%s:%d: CHECK_INT failed: %s == %lld, expected %lld\n", __FILE__,      \
                    __LINE__, #a, gw_a_, gw_b_);                                                   \
        }                                                                                          \
    } while (0)

typedef struct {
    const char *name;
    void (*fn)(void);
} gw_test_case_t;

#define GW_TEST(fn)                                                                                \
    {                                                                                              \
#fn, fn                                                                                    \
    }

static inline int gw_test_main(const gw_test_case_t *cases, size_t n)
{
    int passed = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        int before = gw_test_failures;
        cases[i].fn();
        if (gw_test_failures == before) {
            passed++;
            printf("ok   %s\n", cases[i].name);
        } else {
            failed++;
            printf("FAIL %s\n", cases[i].name);
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#define GW_TEST_RUN(cases) gw_test_main((cases), sizeof(cases) / sizeof((cases)[0]))

#endif
