/* Unit tests for gw_bfilter.c: which responses go through body_filter, and
 * how the filtered bytes are framed for the client. */
#include "gw_test.h"
#include "gw_worker.h"

#include <stdlib.h>

/* A request as gw_bfilter sees it: an HTTP/1.`minor` client, a worker
 * without a Lua runtime. */
static gw_req_t *req_new(int minor)
{
    static gw_worker_t w;
    static gw_route_conf_t route;
    gw_req_t *r = calloc(1, sizeof *r);
    r->w = &w;
    r->match.route = &route;
    r->parser.http_major = 1;
    r->parser.http_minor = (uint8_t)minor;
    r->status = 200;
    return r;
}

static void req_free(gw_req_t *r)
{
    gw_bfilter_release(r);
    free(r);
}

/* The output bytes waiting for the client, as a C string. */
static const char *pending(gw_req_t *r)
{
    static char buf[256];
    size_t n = r->bf_len - r->bf_sent;
    memcpy(buf, r->bf_data + r->bf_sent, n < sizeof buf - 1 ? n : sizeof buf - 1);
    buf[n < sizeof buf - 1 ? n : sizeof buf - 1] = '\0';
    return buf;
}

static void test_chunked_output(void)
{
    gw_req_t *r = req_new(1);
    gw_bfilter_output(r, "hello", 5, false);
    CHECK_STR(pending(r), "5\r\nhello\r\n");
    gw_bfilter_output(r, "", 0, false); /* an empty piece sends nothing */
    CHECK_STR(pending(r), "5\r\nhello\r\n");
    gw_bfilter_output(r, "0123456789abcdefX", 17, true);
    CHECK_STR(pending(r), "5\r\nhello\r\n11\r\n0123456789abcdefX\r\n0\r\n\r\n");
    req_free(r);
}

static void test_eof_alone(void)
{
    gw_req_t *r = req_new(1);
    gw_bfilter_output(r, "", 0, true);
    CHECK_STR(pending(r), "0\r\n\r\n");
    req_free(r);
}

static void test_http10_output_is_raw(void)
{
    gw_req_t *r = req_new(0);
    gw_bfilter_output(r, "abc", 3, false);
    gw_bfilter_output(r, "def", 3, true);
    CHECK_STR(pending(r), "abcdef");
    req_free(r);
}

static void test_sent_bytes_are_dropped(void)
{
    gw_req_t *r = req_new(1);
    gw_bfilter_output(r, "abc", 3, false);
    r->bf_sent = r->bf_len - 2; /* all but the final CRLF went out */
    gw_bfilter_output(r, "d", 1, false);
    CHECK_STR(pending(r), "\r\n1\r\nd\r\n");
    CHECK_INT(r->bf_sent, 0);
    gw_bfilter_sent(r);
    CHECK_INT(r->bf_len, 0);
    req_free(r);
}

static void test_large_output_grows_and_is_freed(void)
{
    gw_req_t *r = req_new(1);
    size_t n = 1024 * 1024;
    char *big = malloc(n);
    memset(big, 'x', n);
    gw_bfilter_output(r, big, n, false);
    CHECK(r->bf_cap >= n + 32);
    CHECK(memcmp(r->bf_data, "100000\r\n", 8) == 0);
    gw_bfilter_sent(r);
    CHECK(r->bf_data == NULL); /* a large buffer is not kept */
    free(big);
    req_free(r);
}

static void test_no_filters_without_plugins(void)
{
    gw_req_t *r = req_new(1);
    r->rbody_mode = GW_BODY_CHUNKED;
    gw_bfilter_framing(r);
    CHECK(!r->bfilter);
    CHECK(!r->rdecode);
    CHECK(!r->close_after);
    req_free(r);
}

int main(void)
{
    static const gw_test_case_t cases[] = {
        GW_TEST(test_chunked_output),
        GW_TEST(test_eof_alone),
        GW_TEST(test_http10_output_is_raw),
        GW_TEST(test_sent_bytes_are_dropped),
        GW_TEST(test_large_output_grows_and_is_freed),
        GW_TEST(test_no_filters_without_plugins),
    };
    return GW_TEST_RUN(cases);
}
