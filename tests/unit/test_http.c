/* Unit tests for gw_http.c's field-value check and gw_net.c's address text. */
#include "gw_http.h"
#include "gw_net.h"
#include "gw_test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>

/* The byte-by-byte definition the fast check must agree with. */
static bool value_ok_slow(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)p[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return false;
    }
    return true;
}

/* Every byte value at every position of values 1..24 bytes long, the rest
 * being ordinary text, a tab or UTF-8: both checks agree. */
static void test_valid_value_every_byte(void)
{
    const char fillers[] = {'a', '\t', (char)0xc3, ' '};
    for (size_t len = 1; len <= 24; len++)
        for (size_t pos = 0; pos < len; pos++)
            for (int b = 0; b < 256; b++)
                for (size_t f = 0; f < sizeof fillers; f++) {
                    char v[24];
                    memset(v, fillers[f], sizeof v);
                    v[pos] = (char)b;
                    bool want = value_ok_slow(v, len);
                    if (gw_http_valid_value((gw_str_t){v, len}) != want) {
                        CHECK_INT(gw_http_valid_value((gw_str_t){v, len}), want);
                        fprintf(stderr, "  len %zu pos %zu byte 0x%02x filler 0x%02x\n", len, pos,
                                b, (unsigned char)fillers[f]);
                        return;
                    }
                }
    CHECK(gw_http_valid_value((gw_str_t){"", 0}));
    CHECK(gw_http_valid_value(GW_STR("text/html; charset=utf-8, q=0.9\tand more text")));
    CHECK(!gw_http_valid_value(GW_STR("a long value that ends in DEL\x7f")));
    CHECK(!gw_http_valid_value(GW_STR("a long value with\r\ninside it")));
}

static const char *ntop4(const char *text)
{
    static char buf[INET6_ADDRSTRLEN];
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    sin->sin_family = AF_INET;
    inet_pton(AF_INET, text, &sin->sin_addr);
    size_t n = gw_net_ntop(&ss, buf, sizeof buf);
    return n == strlen(buf) ? buf : "(length and NUL disagree)";
}

static const char *ntop6(const char *text)
{
    static char buf[INET6_ADDRSTRLEN];
    struct sockaddr_storage ss = {0};
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    sin6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, text, &sin6->sin6_addr);
    size_t n = gw_net_ntop(&ss, buf, sizeof buf);
    return n == strlen(buf) ? buf : "(length and NUL disagree)";
}

static void test_ntop(void)
{
    CHECK_STR(ntop4("127.0.0.1"), "127.0.0.1");
    CHECK_STR(ntop4("0.0.0.0"), "0.0.0.0");
    CHECK_STR(ntop4("255.255.255.255"), "255.255.255.255");
    CHECK_STR(ntop4("10.100.9.199"), "10.100.9.199");
    CHECK_STR(ntop4("192.168.10.1"), "192.168.10.1");
    CHECK_STR(ntop6("::1"), "::1");
    CHECK_STR(ntop6("2001:db8::42"), "2001:db8::42");
    CHECK_STR(ntop6("::ffff:203.0.113.7"), "203.0.113.7");
    CHECK_STR(ntop6("::ffff:0:1"), "0.0.0.1");
    CHECK_STR(ntop6("fe80::ffff:1"), "fe80::ffff:1");
}

int main(void)
{
    static const gw_test_case_t cases[] = {
        GW_TEST(test_valid_value_every_byte),
        GW_TEST(test_ntop),
    };
    return GW_TEST_RUN(cases);
}
