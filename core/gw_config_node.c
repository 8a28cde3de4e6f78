/* The generic config document tree and its decoding helpers (gw_config_node.h). */
#define _POSIX_C_SOURCE 200809L
#include "gw_config_node.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <yaml.h>

/* Bounds on the built tree: aliases can make a small file expand a lot. */
#define GW_CNODE_MAX_DEPTH    64
#define GW_CNODE_MAX_NODES    250000
#define GW_CNODE_MAX_DURATION 1e9 /* seconds, about 31 years */

/* A growable NUL-terminated string. */
typedef struct {
    char *p;
    size_t len;
    size_t cap;
} gw_cnode_buf_t;

typedef struct {
    yaml_document_t *doc;
    size_t nodes; /* nodes built so far */
    int too_big;  /* line where a bound was hit, 0 when none */
} gw_cnode_build_t;

static gw_cnode_t *gw_cnode_build(gw_cnode_build_t *b, yaml_node_t *yn, int depth);

void gw_cnode_free(gw_cnode_t *n)
{
    if (!n)
        return;
    free(n->str);
    for (size_t i = 0; i < n->nitems; i++)
        gw_cnode_free(n->items[i]);
    free(n->items);
    for (size_t i = 0; i < n->npairs; i++) {
        gw_cnode_free(n->pairs[i].key);
        gw_cnode_free(n->pairs[i].value);
    }
    free(n->pairs);
    free(n);
}

gw_cnode_t *gw_cnode_get(const gw_cnode_t *map, const char *key)
{
    if (!map || map->kind != GW_CNODE_MAP)
        return NULL;
    for (size_t i = 0; i < map->npairs; i++) {
        const gw_cnode_t *k = map->pairs[i].key;
        if (k->kind == GW_CNODE_SCALAR && strcmp(k->str, key) == 0)
            return map->pairs[i].value;
    }
    return NULL;
}

const char *gw_cnode_kind_name(const gw_cnode_t *n)
{
    switch (n->kind) {
    case GW_CNODE_NULL:
        return "null";
    case GW_CNODE_LIST:
        return "list";
    case GW_CNODE_MAP:
        return "map";
    default:
        return "scalar";
    }
}

void gw_cnode_set_str(gw_cnode_t *n, char *s, size_t len)
{
    free(n->str);
    n->str = s;
    n->len = len;
}

/* True for the unquoted spellings of YAML null. */
static bool gw_cnode_is_null(const yaml_node_t *yn)
{
    const char *s = (const char *)yn->data.scalar.value;
    size_t len = yn->data.scalar.length;
    if (yn->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    return len == 0 || (len == 1 && s[0] == '~') ||
           (len == 4 &&
            (memcmp(s, "null", 4) == 0 || memcmp(s, "Null", 4) == 0 || memcmp(s, "NULL", 4) == 0));
}

static void gw_cnode_build_scalar(gw_cnode_t *n, yaml_node_t *yn)
{
    if (gw_cnode_is_null(yn)) {
        n->kind = GW_CNODE_NULL;
        n->str = gw_xstrdup("");
        return;
    }
    n->kind = GW_CNODE_SCALAR;
    n->quoted = yn->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
    n->len = yn->data.scalar.length;
    n->str = gw_xstrndup((const char *)yn->data.scalar.value, n->len);
}

/* Build the children of a list; false when a bound was hit. */
static bool gw_cnode_build_list(gw_cnode_build_t *b, gw_cnode_t *n, yaml_node_t *yn, int depth)
{
    yaml_node_item_t *it = yn->data.sequence.items.start;
    size_t count = (size_t)(yn->data.sequence.items.top - it);
    n->kind = GW_CNODE_LIST;
    n->items = gw_xcalloc(count, sizeof(*n->items));
    for (size_t i = 0; i < count; i++) {
        gw_cnode_t *child = gw_cnode_build(b, yaml_document_get_node(b->doc, it[i]), depth + 1);
        if (!child)
            return false;
        n->items[n->nitems++] = child;
    }
    return true;
}

/* Build the pairs of a map; false when a bound was hit. */
static bool gw_cnode_build_map(gw_cnode_build_t *b, gw_cnode_t *n, yaml_node_t *yn, int depth)
{
    yaml_node_pair_t *p = yn->data.mapping.pairs.start;
    size_t count = (size_t)(yn->data.mapping.pairs.top - p);
    n->kind = GW_CNODE_MAP;
    n->pairs = gw_xcalloc(count, sizeof(*n->pairs));
    for (size_t i = 0; i < count; i++) {
        gw_cnode_t *k = gw_cnode_build(b, yaml_document_get_node(b->doc, p[i].key), depth + 1);
        if (!k)
            return false;
        gw_cnode_t *v = gw_cnode_build(b, yaml_document_get_node(b->doc, p[i].value), depth + 1);
        if (!v) {
            gw_cnode_free(k);
            return false;
        }
        n->pairs[n->npairs].key = k;
        n->pairs[n->npairs].value = v;
        n->npairs++;
    }
    return true;
}

/*
 * Copy the libyaml node `yn` and its children into a new tree. Returns NULL
 * (and sets b->too_big) when the depth or node-count bound is exceeded.
 */
static gw_cnode_t *gw_cnode_build(gw_cnode_build_t *b, yaml_node_t *yn, int depth)
{
    int line = (int)yn->start_mark.line + 1;
    if (depth > GW_CNODE_MAX_DEPTH || ++b->nodes > GW_CNODE_MAX_NODES) {
        if (!b->too_big)
            b->too_big = line;
        return NULL;
    }
    gw_cnode_t *n = gw_xcalloc(1, sizeof(*n));
    n->line = line;
    bool ok = true;
    switch (yn->type) {
    case YAML_SEQUENCE_NODE:
        ok = gw_cnode_build_list(b, n, yn, depth);
        break;
    case YAML_MAPPING_NODE:
        ok = gw_cnode_build_map(b, n, yn, depth);
        break;
    default:
        gw_cnode_build_scalar(n, yn);
        break;
    }
    if (!ok) {
        gw_cnode_free(n);
        return NULL;
    }
    return n;
}

/* Describe libyaml's parse failure as "syntax error: problem (context)". */
static void gw_cnode_syntax_error(const yaml_parser_t *p, gw_cnode_error_t *err)
{
    const yaml_mark_t *mark = p->problem ? &p->problem_mark : &p->context_mark;
    err->line = (int)mark->line + 1;
    const char *problem = p->problem ? p->problem : "cannot parse the document";
    if (p->context)
        snprintf(err->message, sizeof err->message, "syntax error: %s (%s)", problem, p->context);
    else
        snprintf(err->message, sizeof err->message, "syntax error: %s", problem);
}

/* True when the parser holds another, non-empty document. */
static bool gw_cnode_has_more(yaml_parser_t *p, gw_cnode_error_t *err, int *bad)
{
    yaml_document_t next;
    if (!yaml_parser_load(p, &next)) {
        gw_cnode_syntax_error(p, err);
        *bad = 1;
        return false;
    }
    yaml_node_t *root = yaml_document_get_root_node(&next);
    if (root) {
        err->line = (int)root->start_mark.line + 1;
        snprintf(err->message, sizeof err->message,
                 "only one document is allowed in a config file");
    }
    yaml_document_delete(&next);
    return root != NULL;
}

int gw_cnode_parse(const char *text, size_t len, gw_cnode_t **root, gw_cnode_error_t *err)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    int bad = 0;
    *root = NULL;
    memset(err, 0, sizeof(*err));
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err->message, sizeof err->message, "cannot initialize the YAML parser");
        return GW_ERROR;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        gw_cnode_syntax_error(&parser, err);
        yaml_parser_delete(&parser);
        return GW_ERROR;
    }
    yaml_node_t *yroot = yaml_document_get_root_node(&doc);
    if (yroot) {
        gw_cnode_build_t b = {.doc = &doc};
        *root = gw_cnode_build(&b, yroot, 0);
        if (!*root) {
            err->line = b.too_big;
            snprintf(err->message, sizeof err->message,
                     "document is nested too deeply or expands to too many nodes");
            bad = 1;
        }
    }
    if (!bad && gw_cnode_has_more(&parser, err, &bad))
        bad = 1;
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (bad) {
        gw_cnode_free(*root);
        *root = NULL;
        return GW_ERROR;
    }
    return GW_OK;
}

/* ---- errors and paths ---- */

void gw_cnode_add_error(gw_config_errors_t *errs, const char *file, int line, const char *path,
                        const char *message)
{
    errs->items = gw_xrealloc(errs->items, (errs->count + 1) * sizeof(*errs->items));
    gw_config_error_t *e = &errs->items[errs->count++];
    e->file = gw_xstrdup(file);
    e->line = line;
    e->path = gw_xstrdup(path);
    e->message = gw_xstrdup(message);
}

/* Record an error at `line` under the current path. */
void gw_cnode_report(gw_cnode_ctx_t *c, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gw_cnode_add_error(c->errs, c->file, line, c->path, msg);
}

/* Append ".key" (or "key" at the top) to the path; returns the length to restore. */
size_t gw_cnode_path_key(gw_cnode_ctx_t *c, const char *key)
{
    size_t old = c->plen;
    size_t room = sizeof c->path - c->plen;
    int n = snprintf(c->path + c->plen, room, "%s%s", c->plen ? "." : "", key);
    c->plen = (n < 0 || (size_t)n >= room) ? sizeof c->path - 1 : c->plen + (size_t)n;
    return old;
}

/* Append "[i]" to the path; returns the length to restore. */
size_t gw_cnode_path_index(gw_cnode_ctx_t *c, size_t i)
{
    size_t old = c->plen;
    size_t room = sizeof c->path - c->plen;
    int n = snprintf(c->path + c->plen, room, "[%zu]", i);
    c->plen = (n < 0 || (size_t)n >= room) ? sizeof c->path - 1 : c->plen + (size_t)n;
    return old;
}

void gw_cnode_path_pop(gw_cnode_ctx_t *c, size_t old)
{
    c->plen = old;
    c->path[old] = '\0';
}

/* Record an error about the child `key` of the current path. */
void gw_cnode_report_key(gw_cnode_ctx_t *c, int line, const char *key, const char *message)
{
    size_t m = gw_cnode_path_key(c, key);
    gw_cnode_report(c, line, "%s", message);
    gw_cnode_path_pop(c, m);
}

/* Write `s` in double quotes, escaped and shortened, for a message. */
const char *gw_cnode_quote(const char *s, char *buf, size_t size)
{
    size_t o = 0, max = size - 5; /* room for quotes, "..." cut marker and NUL */
    buf[o++] = '"';
    for (; *s && o < max; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            buf[o++] = '\\';
        buf[o++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    if (*s) {
        o = o < size - 5 ? o : size - 5;
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

/* Describe what a node holds for "got ...": a quoted scalar, "a map", ... */
static const char *gw_cnode_got(const gw_cnode_t *n, char *buf, size_t size)
{
    switch (n->kind) {
    case GW_CNODE_SCALAR:
        return gw_cnode_quote(n->str, buf, size);
    case GW_CNODE_MAP:
        return "a map";
    case GW_CNODE_LIST:
        return "a list";
    default:
        return "null";
    }
}

/* Report "expected <what>, got <n>". */
void gw_cnode_expect(gw_cnode_ctx_t *c, const gw_cnode_t *n, const char *what)
{
    char got[96];
    gw_cnode_report(c, n->line, "expected %s, got %s", what, gw_cnode_got(n, got, sizeof got));
}

/* Report "expected one of a, b, c, got <n>". */
static void gw_cnode_expect_one_of(gw_cnode_ctx_t *c, const gw_cnode_t *n, const char *const *names)
{
    char what[256] = "one of ";
    for (size_t i = 0; names[i]; i++) {
        if (i)
            strncat(what, ", ", sizeof what - strlen(what) - 1);
        strncat(what, names[i], sizeof what - strlen(what) - 1);
    }
    gw_cnode_expect(c, n, what);
}

/* ---- environment substitution ---- */

static void gw_cnode_buf_add(gw_cnode_buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = gw_xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/*
 * Expand one reference, the text between "${" and "}" (`s` to `end`), into
 * `out`. Returns false after reporting a malformed name or an unset
 * variable without a default. A set but empty variable takes the default.
 */
static bool gw_cnode_env_ref(gw_cnode_ctx_t *c, const gw_cnode_t *n, const char *s, const char *end,
                             gw_cnode_buf_t *out)
{
    const char *q = s;
    while (q < end && (isalnum((unsigned char)*q) || *q == '_'))
        q++;
    bool has_default = end - q >= 2 && q[0] == ':' && q[1] == '-';
    if (q == s || isdigit((unsigned char)*s) || (q < end && !has_default)) {
        int shown = end - s > 64 ? 64 : (int)(end - s);
        gw_cnode_report(c, n->line, "invalid variable reference \"${%.*s}\"", shown, s);
        return false;
    }
    char *name = gw_xstrndup(s, (size_t)(q - s));
    const char *val = getenv(name);
    bool ok = true;
    if (val && (*val || !has_default)) {
        gw_cnode_buf_add(out, val, strlen(val));
    } else if (has_default) {
        gw_cnode_buf_add(out, q + 2, (size_t)(end - q - 2));
    } else {
        gw_cnode_report(c, n->line, "environment variable \"%s\" is not set", name);
        ok = false;
    }
    free(name);
    return ok;
}

/* Substitute every reference in a scalar; on failure the node is marked bad. */
static void gw_cnode_env_scalar(gw_cnode_ctx_t *c, gw_cnode_t *n)
{
    if (!strstr(n->str, "${"))
        return;
    gw_cnode_buf_t out = {0};
    gw_cnode_buf_add(&out, "", 0);
    bool ok = true;
    const char *p = n->str;
    while (*p) {
        if (p[0] != '$' || p[1] != '{') {
            gw_cnode_buf_add(&out, p++, 1);
            continue;
        }
        const char *end = strchr(p + 2, '}');
        if (!end) {
            gw_cnode_report(c, n->line, "unterminated \"${\" (expected ${VAR} or ${VAR:-default})");
            ok = false;
            break;
        }
        if (!gw_cnode_env_ref(c, n, p + 2, end, &out))
            ok = false;
        p = end + 1;
    }
    if (ok) {
        gw_cnode_set_str(n, out.p, out.len);
    } else {
        free(out.p);
        n->bad = true;
    }
}

/* Apply environment substitution to every scalar value (not keys) of a tree. */
void gw_cnode_substitute_env(gw_cnode_ctx_t *c, gw_cnode_t *n)
{
    if (n->kind == GW_CNODE_SCALAR) {
        gw_cnode_env_scalar(c, n);
    } else if (n->kind == GW_CNODE_LIST) {
        for (size_t i = 0; i < n->nitems; i++) {
            size_t m = gw_cnode_path_index(c, i);
            gw_cnode_substitute_env(c, n->items[i]);
            gw_cnode_path_pop(c, m);
        }
    } else if (n->kind == GW_CNODE_MAP) {
        for (size_t i = 0; i < n->npairs; i++) {
            const gw_cnode_t *k = n->pairs[i].key;
            size_t m = gw_cnode_path_key(c, k->kind == GW_CNODE_SCALAR ? k->str : "?");
            gw_cnode_substitute_env(c, n->pairs[i].value);
            gw_cnode_path_pop(c, m);
        }
    }
}

/* ---- maps and scalars ---- */

/*
 * Check that `n` is a map with string keys, each in `fields` (NULL-terminated;
 * NULL accepts any key) and none repeated; `what` names a key in the
 * duplicate message. Reports every problem; returns false only when `n` is
 * not a map at all, so the caller skips it.
 */
bool gw_cnode_check_map(gw_cnode_ctx_t *c, const gw_cnode_t *n, const char *const *fields,
                        const char *what)
{
    char q[96];
    if (n->bad)
        return false;
    if (n->kind != GW_CNODE_MAP) {
        gw_cnode_expect(c, n, "a map");
        return false;
    }
    for (size_t i = 0; i < n->npairs; i++) {
        const gw_cnode_t *k = n->pairs[i].key;
        if (k->kind != GW_CNODE_SCALAR) {
            gw_cnode_report(c, k->line, "expected a string key, got %s",
                            gw_cnode_got(k, q, sizeof q));
            continue;
        }
        bool known = !fields;
        for (size_t f = 0; fields && fields[f] && !known; f++)
            known = strcmp(fields[f], k->str) == 0;
        if (!known) {
            gw_cnode_report(c, k->line, "unknown field %s", gw_cnode_quote(k->str, q, sizeof q));
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            const gw_cnode_t *o = n->pairs[j].key;
            if (o->kind == GW_CNODE_SCALAR && strcmp(o->str, k->str) == 0) {
                gw_cnode_report(c, k->line, "duplicate %s %s (first at line %d)", what,
                                gw_cnode_quote(k->str, q, sizeof q), o->line);
                break;
            }
        }
    }
    return true;
}

/* The value of `key` in a map; NULL when absent or null (then defaults apply). */
const gw_cnode_t *gw_cnode_field(const gw_cnode_t *map, const char *key)
{
    const gw_cnode_t *v = gw_cnode_get(map, key);
    return (v && v->kind != GW_CNODE_NULL) ? v : NULL;
}

/* The text of a scalar, or NULL after reporting "expected <what>". */
const char *gw_cnode_scalar(gw_cnode_ctx_t *c, const gw_cnode_t *n, const char *what)
{
    if (n->bad)
        return NULL;
    if (n->kind == GW_CNODE_SCALAR)
        return n->str;
    gw_cnode_expect(c, n, what);
    return NULL;
}

/* Parse a decimal integer with an optional sign; false on anything else. */
bool gw_cnode_parse_int(const char *s, int64_t *out)
{
    bool neg = *s == '-';
    if (*s == '-' || *s == '+')
        s++;
    if (!*s)
        return false;
    int64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (INT64_MAX - (*s - '0')) / 10)
            return false;
        v = v * 10 + (*s - '0');
    }
    *out = neg ? -v : v;
    return true;
}

bool gw_cnode_int(gw_cnode_ctx_t *c, const gw_cnode_t *n, int64_t min, int64_t max, int64_t *out)
{
    const char *s = gw_cnode_scalar(c, n, "integer");
    int64_t v;
    if (!s)
        return false;
    if (!gw_cnode_parse_int(s, &v)) {
        gw_cnode_expect(c, n, "integer");
        return false;
    }
    if (v < min || v > max) {
        char what[96];
        snprintf(what, sizeof what, "integer between %lld and %lld", (long long)min,
                 (long long)max);
        gw_cnode_expect(c, n, what);
        return false;
    }
    *out = v;
    return true;
}

/* 1 for true/yes/on, 0 for false/no/off (any case), -1 otherwise. */
int gw_cnode_parse_bool(const char *s)
{
    if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on"))
        return 1;
    if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcasecmp(s, "off"))
        return 0;
    return -1;
}

bool gw_cnode_bool(gw_cnode_ctx_t *c, const gw_cnode_t *n, bool *out)
{
    const char *s = gw_cnode_scalar(c, n, "boolean");
    if (!s)
        return false;
    int b = gw_cnode_parse_bool(s);
    if (b < 0) {
        gw_cnode_expect(c, n, "boolean");
        return false;
    }
    *out = b == 1;
    return true;
}

/* Parse "30", "1.5", "500ms", "2s", "1.5m", "1h" into seconds; false if malformed. */
static bool gw_cnode_parse_duration(const char *s, double *out)
{
    double v = 0, scale = 1;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return false;
    for (; *p >= '0' && *p <= '9'; p++)
        v = v * 10 + (*p - '0');
    if (*p == '.') {
        if (p[1] < '0' || p[1] > '9')
            return false;
        for (p++; *p >= '0' && *p <= '9'; p++)
            v += (*p - '0') * (scale /= 10);
    }
    if (!strcmp(p, "ms"))
        v /= 1000;
    else if (!strcmp(p, "m"))
        v *= 60;
    else if (!strcmp(p, "h"))
        v *= 3600;
    else if (*p && strcmp(p, "s") != 0)
        return false;
    *out = v;
    return true;
}

/* Decode a duration in seconds; `positive` rejects zero. */
bool gw_cnode_duration(gw_cnode_ctx_t *c, const gw_cnode_t *n, bool positive, double *out)
{
    const char *what = "duration (e.g. 500ms, 2s, 1.5m)";
    const char *s = gw_cnode_scalar(c, n, what);
    double v;
    if (!s)
        return false;
    if (!gw_cnode_parse_duration(s, &v)) {
        gw_cnode_expect(c, n, what);
        return false;
    }
    if (positive && v <= 0) {
        gw_cnode_expect(c, n, "duration greater than 0");
        return false;
    }
    if (v > GW_CNODE_MAX_DURATION) {
        gw_cnode_expect(c, n, "duration up to 1000000000s");
        return false;
    }
    *out = v;
    return true;
}

/* Parse "1024", "16k", "10m", "1g" (1024-based, any case); false if malformed. */
static bool gw_cnode_parse_size(const char *s, int64_t *out)
{
    int64_t v = 0, mult = 1;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return false;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (INT64_MAX - (*p - '0')) / 10)
            return false;
        v = v * 10 + (*p - '0');
    }
    switch (gw_lower(*p)) {
    case '\0':
        break;
    case 'k':
        mult = 1024;
        break;
    case 'm':
        mult = 1024 * 1024;
        break;
    case 'g':
        mult = 1024 * 1024 * 1024;
        break;
    default:
        return false;
    }
    if ((*p && p[1]) || v > INT64_MAX / mult)
        return false;
    *out = v * mult;
    return true;
}

/* Decode a size in bytes, at least `min`. */
bool gw_cnode_size(gw_cnode_ctx_t *c, const gw_cnode_t *n, int64_t min, int64_t *out)
{
    const char *what = "size (e.g. 1024, 16k, 10m, 1g)";
    const char *s = gw_cnode_scalar(c, n, what);
    int64_t v;
    if (!s)
        return false;
    if (!gw_cnode_parse_size(s, &v)) {
        gw_cnode_expect(c, n, what);
        return false;
    }
    if (v < min) {
        char what_min[64];
        if (min <= 1)
            snprintf(what_min, sizeof what_min, "size greater than 0");
        else if (min % 1024 == 0)
            snprintf(what_min, sizeof what_min, "size of at least %lldk", (long long)min / 1024);
        else
            snprintf(what_min, sizeof what_min, "size of at least %lld", (long long)min);
        gw_cnode_expect(c, n, what_min);
        return false;
    }
    *out = v;
    return true;
}

/* Decode a non-empty string into *out, replacing (and freeing) what was there. */
bool gw_cnode_str(gw_cnode_ctx_t *c, const gw_cnode_t *n, char **out)
{
    const char *s = gw_cnode_scalar(c, n, "string");
    if (!s)
        return false;
    if (!*s) {
        gw_cnode_expect(c, n, "non-empty string");
        return false;
    }
    free(*out);
    *out = gw_xstrdup(s);
    return true;
}

/* Decode one of `names` (NULL-terminated) into its index. */
bool gw_cnode_enum(gw_cnode_ctx_t *c, const gw_cnode_t *n, const char *const *names, int *out)
{
    const char *s = gw_cnode_scalar(c, n, "string");
    if (!s)
        return false;
    for (int i = 0; names[i]; i++) {
        if (strcmp(names[i], s) == 0) {
            *out = i;
            return true;
        }
    }
    gw_cnode_expect_one_of(c, n, names);
    return false;
}

/* ---- fields: look up `key` in `map` and decode it under its path ---- */

void gw_cnode_field_int(gw_cnode_ctx_t *c, const gw_cnode_t *map, const char *key, int64_t min,
                        int64_t max, int *out)
{
    const gw_cnode_t *v = gw_cnode_field(map, key);
    int64_t x;
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, key);
    if (gw_cnode_int(c, v, min, max, &x))
        *out = (int)x;
    gw_cnode_path_pop(c, m);
}

void gw_cnode_field_bool(gw_cnode_ctx_t *c, const gw_cnode_t *map, const char *key, bool *out)
{
    const gw_cnode_t *v = gw_cnode_field(map, key);
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, key);
    gw_cnode_bool(c, v, out);
    gw_cnode_path_pop(c, m);
}

void gw_cnode_field_duration(gw_cnode_ctx_t *c, const gw_cnode_t *map, const char *key,
                             bool positive, double *out)
{
    const gw_cnode_t *v = gw_cnode_field(map, key);
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, key);
    gw_cnode_duration(c, v, positive, out);
    gw_cnode_path_pop(c, m);
}

void gw_cnode_field_size(gw_cnode_ctx_t *c, const gw_cnode_t *map, const char *key, int64_t min,
                         int64_t *out)
{
    const gw_cnode_t *v = gw_cnode_field(map, key);
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, key);
    gw_cnode_size(c, v, min, out);
    gw_cnode_path_pop(c, m);
}

void gw_cnode_field_str(gw_cnode_ctx_t *c, const gw_cnode_t *map, const char *key, char **out)
{
    const gw_cnode_t *v = gw_cnode_field(map, key);
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, key);
    gw_cnode_str(c, v, out);
    gw_cnode_path_pop(c, m);
}

/* Returns false when the field is present but invalid (or already reported). */
bool gw_cnode_field_enum(gw_cnode_ctx_t *c, const gw_cnode_t *map, const char *key,
                         const char *const *names, int *out)
{
    const gw_cnode_t *v = gw_cnode_field(map, key);
    if (!v)
        return true;
    size_t m = gw_cnode_path_key(c, key);
    bool ok = gw_cnode_enum(c, v, names, out);
    gw_cnode_path_pop(c, m);
    return ok;
}
