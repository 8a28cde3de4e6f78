/* Unit tests for the JSON access log (gw_accesslog.c). */
#include "gw_accesslog.h"
#include "gw_test.h"

#include <stdlib.h>
#include <unistd.h>

#define T0 1795341600.0 /* 2026-11-22T10:00:00Z */

static char log_path[64];

/* A fresh empty temporary file, opened as the access log. */
static void open_temp(void)
{
    snprintf(log_path, sizeof log_path, "/tmp/moongate-accesslog-XXXXXX");
    int fd = mkstemp(log_path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_INT(gw_accesslog_open(log_path), GW_OK);
}

/* The whole file as a malloc'd string (the caller frees). */
static char *slurp(void)
{
    FILE *f = fopen(log_path, "rb");
    if (!f)
        return gw_xstrdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = gw_xmalloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    fclose(f);
    return s;
}

static void done_temp(void)
{
    gw_accesslog_close();
    unlink(log_path);
}

static gw_access_entry_t sample(void)
{
    gw_access_entry_t e = {
        .time = T0 + 0.123,
        .request_id = GW_STR("4bf92f3577b34da6"),
        .client = GW_STR("127.0.0.1"),
        .tls = true,
        .method = GW_STR("GET"),
        .path = GW_STR("/x?y=1"),
        .route = GW_STR("r"),
        .upstream = GW_STR("127.0.0.1:9001"),
        .status = 200,
        .bytes_sent = 123,
        .bytes_received = 80,
        .request_time = 0.0012,
        .upstream_time = 0.001,
    };
    return e;
}

static void test_line(void)
{
    open_temp();
    gw_access_entry_t e = sample();
    gw_accesslog_write(&e);
    char *s = slurp();
    CHECK_STR(s, ""); /* buffered until flushed */
    free(s);
    gw_accesslog_flush();
    s = slurp();
    CHECK_STR(
        s, "{\"time\":\"2026-11-22T10:00:00.123Z\",\"request_id\":\"4bf92f3577b34da6\","
           "\"client\":\"127.0.0.1\",\"scheme\":\"https\",\"method\":\"GET\",\"path\":\"/x?y=1\","
           "\"route\":\"r\",\"upstream\":\"127.0.0.1:9001\",\"status\":200,"
           "\"bytes_sent\":123,\"bytes_received\":80,\"request_time\":0.0012,"
           "\"upstream_time\":0.0010}\n");
    free(s);
    done_temp();
}

static void test_nulls_and_numbers(void)
{
    open_temp();
    gw_access_entry_t e = {
        .time = T0 + 1.9996, /* rounds to the microsecond, then truncates to ms */
        .method = GW_STR("POST"),
        .path = GW_STR("/"),
        .status = 404,
        .bytes_sent = UINT64_MAX,
        .request_time = 12.34567,
        .upstream_time = -1,
    };
    gw_accesslog_write(&e);
    e.time = 946684799.0005;
    e.request_time = -3;
    e.upstream_time = 0;
    e.bytes_sent = 0;
    gw_accesslog_write(&e);
    gw_accesslog_flush();
    char *s = slurp();
    CHECK_STR(
        s,
        "{\"time\":\"2026-11-22T10:00:01.999Z\",\"request_id\":\"\",\"client\":\"\","
        "\"scheme\":\"http\",\"method\":\"POST\",\"path\":\"/\",\"route\":null,\"upstream\":null,"
        "\"status\":404,\"bytes_sent\":18446744073709551615,\"bytes_received\":0,"
        "\"request_time\":12.3457,\"upstream_time\":null}\n"
        "{\"time\":\"1999-12-31T23:59:59.000Z\",\"request_id\":\"\",\"client\":\"\","
        "\"scheme\":\"http\",\"method\":\"POST\",\"path\":\"/\",\"route\":null,\"upstream\":null,"
        "\"status\":404,\"bytes_sent\":0,\"bytes_received\":0,"
        "\"request_time\":0.0000,\"upstream_time\":0.0000}\n");
    free(s);
    done_temp();
}

static void test_escaping(void)
{
    open_temp();
    gw_access_entry_t e = sample();
    e.path = GW_STR("/a\"b\\c\n\x01\x1f\x7f/\xc3\xa9");
    e.request_id = GW_STR("\"");
    e.route = GW_STR("\t");
    gw_accesslog_write(&e);
    gw_accesslog_flush();
    char *s = slurp();
    CHECK(strstr(s, "\"path\":\"/a\\\"b\\\\c\\u000a\\u0001\\u001f\x7f/\xc3\xa9\",") != NULL);
    CHECK(strstr(s, "\"request_id\":\"\\\"\",") != NULL);
    CHECK(strstr(s, "\"route\":\"\\u0009\",") != NULL);
    free(s);
    done_temp();
}

/* Count lines and check that the file holds only whole lines. */
static size_t whole_lines(const char *s)
{
    size_t n = 0, len = strlen(s);
    for (size_t i = 0; i < len; i++)
        n += s[i] == '\n';
    if (len && s[len - 1] != '\n')
        return (size_t)-1;
    return n;
}

static void test_buffer_full(void)
{
    open_temp();
    gw_access_entry_t e = sample();
    size_t line_len = 0;
    for (int i = 0; i < 1000; i++) {
        gw_accesslog_write(&e);
        if (i == 0) {
            gw_accesslog_flush();
            char *s = slurp();
            line_len = strlen(s);
            free(s);
        }
    }
    /* Lines went out when the buffer filled, never cut in the middle. */
    char *s = slurp();
    size_t before = whole_lines(s);
    CHECK(before > 1 && before < 1000);
    CHECK_INT(strlen(s), before * line_len);
    free(s);
    gw_accesslog_flush();
    s = slurp();
    CHECK_INT(whole_lines(s), 1000);
    free(s);

    /* A line longer than the buffer still comes out whole. */
    size_t n = 100000;
    char *big = gw_xmalloc(n);
    memset(big, 'p', n);
    e.path = (gw_str_t){big, n};
    gw_accesslog_write(&e);
    gw_accesslog_flush();
    s = slurp();
    CHECK_INT(whole_lines(s), 1001);
    CHECK_INT(strlen(s), 1000 * line_len + line_len - strlen("/x?y=1") + n);
    free(s);
    free(big);
    done_temp();
}

static void test_open_close(void)
{
    gw_access_entry_t e = sample();
    gw_accesslog_write(&e); /* nothing open: ignored */
    open_temp();
    CHECK_INT(gw_accesslog_open("/nonexistent-dir/x/access.log"), GW_ERROR);
    gw_accesslog_write(&e); /* the old log stays open */
    gw_accesslog_close();
    gw_accesslog_write(&e); /* closed: ignored */
    gw_accesslog_flush();
    char *s = slurp();
    CHECK_INT(whole_lines(s), 1);
    free(s);
    done_temp();
    CHECK_INT(gw_accesslog_open(NULL), GW_ERROR);
}

int main(void)
{
    static const gw_test_case_t cases[] = {
        GW_TEST(test_line),        GW_TEST(test_nulls_and_numbers), GW_TEST(test_escaping),
        GW_TEST(test_buffer_full), GW_TEST(test_open_close),
    };
    return GW_TEST_RUN(cases);
}
