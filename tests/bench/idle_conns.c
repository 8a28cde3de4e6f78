/*
 * idle_conns: hold many idle HTTP/1.1 keep-alive connections open, for the
 * idle-connection memory figure of tests/bench/run.sh.
 *
 *   idle_conns HOST PORT COUNT
 *
 * Opens COUNT connections to HOST:PORT one after the other, sends one complete
 * "GET / HTTP/1.1" on each and reads its whole response (Content-Length or
 * chunked), so every connection has served a request and sits idle in the
 * server's keep-alive state. Then prints "open COUNT" and waits until standard
 * input reaches end of file. Before exiting it prints "still_open M": how many
 * of the connections the server had not closed meanwhile.
 *
 * On any failure it prints "error: ..." with the number of connections opened
 * so far and exits with status 1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static const char request[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: moongate-bench\r\n\r\n";

/* Finds a header's value in the head [head, end); NULL when absent. */
static const char *find_header(const char *head, const char *end, const char *name)
{
    size_t nlen = strlen(name);
    const char *p = memchr(head, '\n', (size_t)(end - head));
    while (p && p + 1 < end) {
        p++;
        if ((size_t)(end - p) > nlen + 1 && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            return v;
        }
        p = memchr(p, '\n', (size_t)(end - p));
    }
    return NULL;
}

/* Reads one complete response from fd. Returns 0 on a 2xx response. */
static int read_response(int fd, char *err, size_t errsz)
{
    char buf[65536];
    size_t len = 0;
    const char *head_end = NULL;

    for (;;) {
        if (len == sizeof(buf) - 1) {
            snprintf(err, errsz, "response too large");
            return -1;
        }
        ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, errsz, "%s", n == 0 ? "connection closed before the response ended" : strerror(errno));
            return -1;
        }
        len += (size_t)n;
        buf[len] = '\0';

        if (!head_end) {
            char *h = strstr(buf, "\r\n\r\n");
            if (!h)
                continue;
            head_end = h + 4;
            if (strncmp(buf, "HTTP/1.", 7) != 0 || buf[9] != '2') {
                snprintf(err, errsz, "unexpected status line: %.40s", buf);
                return -1;
            }
        }

        const char *cl = find_header(buf, head_end, "Content-Length");
        const char *te = find_header(buf, head_end, "Transfer-Encoding");
        if (cl) {
            size_t body = (size_t)strtoull(cl, NULL, 10);
            if (len >= (size_t)(head_end - buf) + body)
                return 0;
        } else if (te && strncasecmp(te, "chunked", 7) == 0) {
            /* The last chunk: "0\r\n\r\n" at the end of what was read. */
            if (len >= 5 && memcmp(buf + len - 5, "0\r\n\r\n", 5) == 0)
                return 0;
        } else {
            return 0; /* no body (e.g. 204) */
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s HOST PORT COUNT\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    int count = atoi(argv[3]);
    if (port <= 0 || port > 65535 || count <= 0) {
        fprintf(stderr, "bad PORT or COUNT\n");
        return 2;
    }

    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "bad HOST (numeric IPv4 expected): %s\n", host);
        return 2;
    }

    int *fds = calloc((size_t)count, sizeof(int));
    if (!fds)
        return 1;

    char err[256];
    struct timeval tv = {.tv_sec = 5, .tv_usec = 0};
    for (int i = 0; i < count; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            printf("error: socket: %s after %d connections\n", strerror(errno), i);
            return 1;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            printf("error: connect: %s after %d connections\n", strerror(errno), i);
            return 1;
        }
        if (send(fd, request, sizeof(request) - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof(request) - 1)) {
            printf("error: send: %s after %d connections\n", strerror(errno), i);
            return 1;
        }
        if (read_response(fd, err, sizeof(err)) != 0) {
            printf("error: %s after %d connections\n", err, i);
            return 1;
        }
        fds[i] = fd;
    }
    printf("open %d\n", count);
    fflush(stdout);

    /* Hold the connections until the caller closes our standard input. */
    for (;;) {
        char c;
        ssize_t r = read(STDIN_FILENO, &c, 1);
        if (r > 0 || (r < 0 && errno == EINTR))
            continue;
        break;
    }

    /* A connection the server closed is readable with EOF (or an error). */
    int open = 0;
    for (int i = 0; i < count; i++) {
        struct pollfd p = {.fd = fds[i], .events = POLLIN | POLLRDHUP};
        if (poll(&p, 1, 0) == 0)
            open++;
    }
    printf("still_open %d\n", open);
    fflush(stdout);
    return 0;
}
