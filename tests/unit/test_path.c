/* Unit tests for gw_path.c: normalisation, encoding and splitting. */
#include "gw_path.h"
#include "gw_test.h"

#include <stdlib.h>

static char norm_buf[1024];

/* Normalise a C string into norm_buf; NULL when it is rejected. */
static const char *norm(const char *in)
{
    ssize_t n = gw_path_normalize((gw_str_t){in, strlen(in)}, norm_buf, sizeof(norm_buf));
    if (n < 0)
        return NULL;
    if ((size_t)n != strlen(norm_buf))
        return "(length and NUL disagree)";
    return norm_buf;
}

static ssize_t norm_len(const char *in)
{
    return gw_path_normalize((gw_str_t){in, strlen(in)}, norm_buf, sizeof(norm_buf));
}

static void test_normalize_plain(void)
{
    CHECK_STR(norm("/"), "/");
    CHECK_STR(norm("/users"), "/users");
    CHECK_STR(norm("/users/"), "/users/");
    CHECK_STR(norm("/users/42/orders"), "/users/42/orders");
    CHECK_STR(norm("/a;b=c/d@e:f"), "/a;b=c/d@e:f");
    CHECK_STR(norm("/caf\xc3\xa9"), "/caf\xc3\xa9");
}

static void test_normalize_slashes(void)
{
    CHECK_STR(norm("//"), "/");
    CHECK_STR(norm("///a"), "/a");
    CHECK_STR(norm("/a//b///c"), "/a/b/c");
    CHECK_STR(norm("/a/b//"), "/a/b/");
}

static void test_normalize_dots(void)
{
    CHECK_STR(norm("/public/../admin"), "/admin");
    CHECK_STR(norm("/a/./b//c"), "/a/b/c");
    CHECK_STR(norm("/a/b/.."), "/a/");
    CHECK_STR(norm("/a/b/."), "/a/b/");
    CHECK_STR(norm("/a/b/../"), "/a/");
    CHECK_STR(norm("/a/b/../../c"), "/c");
    CHECK_STR(norm("/a/.."), "/");
    CHECK_STR(norm("/."), "/");
    CHECK_STR(norm("/./"), "/");
    CHECK_STR(norm("/./././x"), "/x");
    CHECK_STR(norm("/a/b/c/../../d/./e/.."), "/a/d/");
    CHECK_STR(norm("/a//..//b"), "/b");
    /* Only whole segments are dot segments. */
    CHECK_STR(norm("/..."), "/...");
    CHECK_STR(norm("/a/..b/c."), "/a/..b/c.");
    CHECK_STR(norm("/.hidden/x"), "/.hidden/x");
}

static void test_normalize_above_root(void)
{
    CHECK_INT(norm_len("/.."), -1);
    CHECK_INT(norm_len("/../x"), -1);
    CHECK_INT(norm_len("/a/../.."), -1);
    CHECK_INT(norm_len("/a/../../b"), -1);
    CHECK_INT(norm_len("/%2e%2e/x"), -1);
    CHECK_INT(norm_len("/%2E%2E"), -1);
    CHECK_INT(norm_len("/.%2e/admin"), -1);
    CHECK_INT(norm_len("//../x"), -1);
}

static void test_normalize_escapes(void)
{
    CHECK_STR(norm("/%41%62c"), "/Abc");
    CHECK_STR(norm("/a%2fb"), "/a/b");
    CHECK_STR(norm("/a%2Fb"), "/a/b");
    CHECK_STR(norm("/a%2f%2fb"), "/a/b");
    CHECK_STR(norm("/x/%2e%2e/admin"), "/admin");
    CHECK_STR(norm("/x/%2e/y"), "/x/y");
    CHECK_STR(norm("/a/..%2fb"), "/b");
    CHECK_STR(norm("/caf%C3%A9"), "/caf\xc3\xa9");
    CHECK_STR(norm("/caf%c3%a9"), "/caf\xc3\xa9");
    CHECK_STR(norm("/100%25"), "/100%");
    CHECK_STR(norm("/a%20b"), "/a b");
    /* A decoded "%2e" after "%25" is data, not a second escape. */
    CHECK_STR(norm("/%252e%252e"), "/%2e%2e");
}

static void test_normalize_invalid(void)
{
    CHECK_INT(norm_len(""), -1);
    CHECK_INT(norm_len("relative"), -1);
    CHECK_INT(norm_len("*"), -1);
    CHECK_INT(norm_len("%2fa"), -1);
    CHECK_INT(norm_len("%00"), -1);
    CHECK_INT(norm_len("/a%00b"), -1);
    CHECK_INT(norm_len("/a/%zz"), -1);
    CHECK_INT(norm_len("/a/%4"), -1);
    CHECK_INT(norm_len("/a/%"), -1);
    CHECK_INT(norm_len("/a/%g1"), -1);
    CHECK_INT(norm_len("/a\tb"), -1);
    CHECK_INT(norm_len("/a\rb"), -1);
    CHECK_INT(norm_len("/a\x7f"), -1);
    CHECK_INT(norm_len("/a%0a"), -1);
    CHECK_INT(norm_len("/a%0D%0A"), -1);
    CHECK_INT(norm_len("/a%1f"), -1);
    CHECK_INT(norm_len("/a%7F"), -1);

    /* A NUL byte inside the slice is a control character too. */
    gw_str_t nul = {"/a\0b", 4};
    CHECK_INT(gw_path_normalize(nul, norm_buf, sizeof(norm_buf)), -1);
}

/* The output never exceeds raw.len + 1, and a smaller buffer is refused. */
static void test_normalize_buffer(void)
{
    const char *in = "/abc/def";
    size_t len = strlen(in);
    char *out = malloc(len + 1); /* exact size: ASan reports any overrun */
    CHECK_INT(gw_path_normalize((gw_str_t){in, len}, out, len + 1), (ssize_t)len);
    CHECK_STR(out, in);
    CHECK_INT(gw_path_normalize((gw_str_t){in, len}, out, len), -1);
    CHECK_INT(gw_path_normalize((gw_str_t){in, len}, out, 0), -1);
    free(out);

    /* The input need not be NUL-terminated. */
    char raw[] = {'/', 'a', '/', '.', '.', 'X'};
    CHECK_INT(gw_path_normalize((gw_str_t){raw, 5}, norm_buf, sizeof(norm_buf)), 1);
    CHECK_STR(norm_buf, "/");
}

/* Encode a C string; returns a static buffer (NUL-terminated here) or NULL. */
static const char *enc(const char *in)
{
    static char buf[1024];
    ssize_t n = gw_path_encode((gw_str_t){in, strlen(in)}, buf, sizeof(buf) - 1);
    if (n < 0)
        return NULL;
    buf[n] = '\0';
    return buf;
}

static void test_encode(void)
{
    CHECK_STR(enc(""), "");
    CHECK_STR(enc("/"), "/");
    CHECK_STR(enc("/users/42"), "/users/42");
    CHECK_STR(enc("/a-b.c_d~e"), "/a-b.c_d~e");
    CHECK_STR(enc("/!$&'()*+,;=:@"), "/!$&'()*+,;=:@");
    CHECK_STR(enc("/a b"), "/a%20b");
    CHECK_STR(enc("/100%"), "/100%25");
    CHECK_STR(enc("/a?b#c"), "/a%3Fb%23c");
    CHECK_STR(enc("/caf\xc3\xa9"), "/caf%C3%A9");
    CHECK_STR(enc("/\"<>\\^`{|}[]"), "/%22%3C%3E%5C%5E%60%7B%7C%7D%5B%5D");
}

static void test_encode_buffer(void)
{
    char out[9];
    /* "/\xff\xff" needs 7 bytes; 3 * len = 9 is always enough. */
    CHECK_INT(gw_path_encode(GW_STR("/\xff\xff"), out, 9), 7);
    CHECK(memcmp(out, "/%FF%FF", 7) == 0);
    CHECK_INT(gw_path_encode(GW_STR("/\xff\xff"), out, 7), 7);
    CHECK_INT(gw_path_encode(GW_STR("/\xff\xff"), out, 6), -1);
    CHECK_INT(gw_path_encode(GW_STR("/ab"), out, 2), -1);
    CHECK_INT(gw_path_encode(GW_STR("\xff\xff\xff"), out, 9), 9);
}

/* normalize(encode(normalize(x))) == normalize(x): encoding loses nothing. */
static void check_round_trip(const char *in)
{
    char n1[256], e[768], n2[256];
    ssize_t l1 = gw_path_normalize((gw_str_t){in, strlen(in)}, n1, sizeof(n1));
    CHECK(l1 >= 0);
    if (l1 < 0)
        return;
    ssize_t le = gw_path_encode((gw_str_t){n1, (size_t)l1}, e, sizeof(e));
    CHECK(le >= 0);
    if (le < 0)
        return;
    ssize_t l2 = gw_path_normalize((gw_str_t){e, (size_t)le}, n2, sizeof(n2));
    CHECK_INT(l2, l1);
    CHECK(l2 == l1 && memcmp(n1, n2, (size_t)l1) == 0);
}

static void test_encode_round_trip(void)
{
    check_round_trip("/");
    check_round_trip("/users/42");
    check_round_trip("/a%20b/c%25d");
    check_round_trip("/caf%C3%A9/%3F%23");
    check_round_trip("/x/%252e%252e/y");
    check_round_trip("/a/./b/../c//d");
    check_round_trip("/%5B%5D%7B%7D%22");

    /* Every byte that normalisation lets through survives a round trip. */
    char all[2 + 256];
    size_t n = 0;
    all[n++] = '/';
    for (int c = 0x20; c < 0x100; c++)
        if (c != 0x7f && c != '/')
            all[n++] = (char)c;
    all[n] = '\0';
    char e[3 * sizeof(all)], back[sizeof(all)];
    ssize_t le = gw_path_encode((gw_str_t){all, n}, e, sizeof(e));
    CHECK(le > 0);
    ssize_t lb = gw_path_normalize((gw_str_t){e, (size_t)le}, back, sizeof(back));
    CHECK_INT(lb, (ssize_t)n);
    CHECK(lb == (ssize_t)n && memcmp(all, back, n) == 0);
}

static void test_split(void)
{
    gw_str_t path, query;

    gw_path_split(GW_STR("/users?id=1&x=2"), &path, &query);
    CHECK(gw_str_eq(path, GW_STR("/users")));
    CHECK(gw_str_eq(query, GW_STR("id=1&x=2")));

    gw_path_split(GW_STR("/users"), &path, &query);
    CHECK(gw_str_eq(path, GW_STR("/users")));
    CHECK(query.p == NULL);
    CHECK_INT(query.len, 0);

    gw_path_split(GW_STR("/users?"), &path, &query);
    CHECK(gw_str_eq(path, GW_STR("/users")));
    CHECK(query.p != NULL);
    CHECK_INT(query.len, 0);

    gw_path_split(GW_STR("/a?b?c"), &path, &query);
    CHECK(gw_str_eq(path, GW_STR("/a")));
    CHECK(gw_str_eq(query, GW_STR("b?c")));

    gw_path_split(GW_STR("?q"), &path, &query);
    CHECK_INT(path.len, 0);
    CHECK(gw_str_eq(query, GW_STR("q")));

    gw_path_split(GW_STR(""), &path, &query);
    CHECK_INT(path.len, 0);
    CHECK(query.p == NULL);
}

int main(void)
{
    static const gw_test_case_t cases[] = {
        GW_TEST(test_normalize_plain),
        GW_TEST(test_normalize_slashes),
        GW_TEST(test_normalize_dots),
        GW_TEST(test_normalize_above_root),
        GW_TEST(test_normalize_escapes),
        GW_TEST(test_normalize_invalid),
        GW_TEST(test_normalize_buffer),
        GW_TEST(test_encode),
        GW_TEST(test_encode_buffer),
        GW_TEST(test_encode_round_trip),
        GW_TEST(test_split),
    };
    return GW_TEST_RUN(cases);
}
