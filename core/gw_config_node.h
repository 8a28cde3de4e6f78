/*
 * A generic document tree for config files: maps, lists and scalars parsed
 * from YAML or JSON by libyaml, each node remembering the line it starts on,
 * and the helpers that decode typed values from it while collecting errors
 * with their document paths. Knows nothing of the Moongate config schema;
 * gw_config.c uses these to decode the tree into gw_config_t.
 */
#ifndef GW_CONFIG_NODE_H
#define GW_CONFIG_NODE_H

#include "gw_config.h"

typedef enum {
    GW_CNODE_NULL = 0, /* an unquoted empty value, "~" or "null" */
    GW_CNODE_SCALAR,
    GW_CNODE_LIST,
    GW_CNODE_MAP,
} gw_cnode_kind_t;

typedef struct gw_cnode_s gw_cnode_t;

typedef struct {
    gw_cnode_t *key; /* usually a scalar; any node kind is possible in YAML */
    gw_cnode_t *value;
} gw_cnode_pair_t;

struct gw_cnode_s {
    gw_cnode_kind_t kind;
    int line;    /* 1-based */
    bool quoted; /* scalar written in quotes or as a block literal */
    bool bad;    /* already reported as wrong; decoders skip it quietly */
    char *str;   /* scalar text, NUL-terminated, owned by the node */
    size_t len;
    gw_cnode_t **items; /* list */
    size_t nitems;
    gw_cnode_pair_t *pairs; /* map, in document order; keys may repeat */
    size_t npairs;
};

/* A syntax or structure error found while parsing. */
typedef struct {
    int line;
    char message[256];
} gw_cnode_error_t;

/*
 * Parse YAML or JSON `text` (not necessarily NUL-terminated). Returns GW_OK
 * and the tree in *root (NULL for an empty document), or GW_ERROR with *err
 * filled and *root NULL. Aliases are expanded into copies; the tree is
 * bounded in depth and size so hostile aliases cannot exhaust memory.
 */
int gw_cnode_parse(const char *text, size_t len, gw_cnode_t **root, gw_cnode_error_t *err);

/* Free a tree; NULL is allowed. */
void gw_cnode_free(gw_cnode_t *n);

/*
 * The value stored under the scalar key `key` in `map` (the first one when
 * the key repeats); NULL when `map` is not a map or the key is absent.
 */
gw_cnode_t *gw_cnode_get(const gw_cnode_t *map, const char *key);

/* "map", "list", "null" or "scalar": for "expected X, got Y" messages. */
const char *gw_cnode_kind_name(const gw_cnode_t *n);

/* Replace a scalar's text with `s` (taking ownership of it). */
void gw_cnode_set_str(gw_cnode_t *n, char *s, size_t len);

/* ---- decoding with error collection ---- */

#define GW_CNODE_PATH_MAX 512

/*
 * Decoding state: errors go to `errs` as {file, line, path, message}, where
 * path is the document path of the node being decoded, e.g.
 * "routes[2].upstream". Push a segment with gw_cnode_path_key/_index, which
 * return the length to give back to gw_cnode_path_pop. A path too long for
 * the buffer is cut short.
 */
typedef struct {
    const char *file;
    gw_config_errors_t *errs;
    char path[GW_CNODE_PATH_MAX];
    size_t plen;
} gw_cnode_ctx_t;

size_t gw_cnode_path_key(gw_cnode_ctx_t *c, const char *key);
size_t gw_cnode_path_index(gw_cnode_ctx_t *c, size_t i);
void gw_cnode_path_pop(gw_cnode_ctx_t *c, size_t old);

/* Append a copy of one error to errs. */
void gw_cnode_add_error(gw_config_errors_t *errs, const char *file, int line, const char *path,
                        const char *message);

/* Record an error at `line` under the current path (or its child `key`). */
void gw_cnode_report(gw_cnode_ctx_t *c, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void gw_cnode_report_key(gw_cnode_ctx_t *c, int line, const char *key, const char *message);

/* Report "expected <what>, got <n>", n shown quoted or as "a map", "a list", "null". */
void gw_cnode_expect(gw_cnode_ctx_t *c, const gw_cnode_t *n, const char *what);

/* Write `s` into buf (size >= 8) in double quotes, escaped and shortened; returns buf. */
const char *gw_cnode_quote(const char *s, char *buf, size_t size);

/*
 * Replace ${VAR} and ${VAR:-default} in every scalar value of the tree (map
 * keys are left alone). ${VAR:-default} also takes the default when VAR is
 * empty. An unset VAR without a default, a malformed name or a missing "}"
 * is reported, and that scalar is marked bad so it is not reported again.
 */
void gw_cnode_substitute_env(gw_cnode_ctx_t *c, gw_cnode_t *n);

/*
 * Check that `n` is a map with string keys, each in `fields` (NULL-terminated;
 * NULL accepts any key) and none repeated; `what` names a key in the
 * "duplicate <what>" message. Reports every problem and returns false only
 * when `n` is not a map (or is bad), so the caller skips it.
 */
bool gw_cnode_check_map(gw_cnode_ctx_t *c, const gw_cnode_t *n, const char *const *fields,
                        const char *what);

/* Like gw_cnode_get, but a null value counts as absent (defaults apply). */
const gw_cnode_t *gw_cnode_field(const gw_cnode_t *map, const char *key);

/* The text of a scalar; NULL after reporting "expected <what>" (quietly if bad). */
const char *gw_cnode_scalar(gw_cnode_ctx_t *c, const gw_cnode_t *n, const char *what);

/* A decimal integer with an optional sign; false on anything else or overflow. */
bool gw_cnode_parse_int(const char *s, int64_t *out);

/* 1 for true/yes/on, 0 for false/no/off (any case), -1 otherwise. */
int gw_cnode_parse_bool(const char *s);

/*
 * Typed decoders: each returns true and stores the value, or reports why the
 * node does not fit (under the current path) and returns false leaving *out
 * alone. Durations are a number of seconds or a string with ms, s, m or h;
 * `positive` rejects zero. Sizes are bytes or a number with k, m or g
 * (1024-based). gw_cnode_str wants a non-empty string and frees the old *out.
 */
bool gw_cnode_int(gw_cnode_ctx_t *c, const gw_cnode_t *n, int64_t min, int64_t max, int64_t *out);
bool gw_cnode_bool(gw_cnode_ctx_t *c, const gw_cnode_t *n, bool *out);
bool gw_cnode_duration(gw_cnode_ctx_t *c, const gw_cnode_t *n, bool positive, double *out);
bool gw_cnode_size(gw_cnode_ctx_t *c, const gw_cnode_t *n, int64_t min, int64_t *out);
bool gw_cnode_str(gw_cnode_ctx_t *c, const gw_cnode_t *n, char **out);
bool gw_cnode_enum(gw_cnode_ctx_t *c, const gw_cnode_t *n, const char *const *names, int *out);

/*
 * The same for the field `key` of `map`, decoded under "<path>.key". An
 * absent or null field leaves *out (the default) alone.
 * gw_cnode_field_enum returns false only when the field is present but invalid.
 */
void gw_cnode_field_int(gw_cnode_ctx_t *c, const gw_cnode_t *map, const char *key, int64_t min,
                        int64_t max, int *out);
void gw_cnode_field_bool(gw_cnode_ctx_t *c, const gw_cnode_t *map, const char *key, bool *out);
void gw_cnode_field_duration(gw_cnode_ctx_t *c, const gw_cnode_t *map, const char *key,
                             bool positive, double *out);
void gw_cnode_field_size(gw_cnode_ctx_t *c, const gw_cnode_t *map, const char *key, int64_t min,
                         int64_t *out);
void gw_cnode_field_str(gw_cnode_ctx_t *c, const gw_cnode_t *map, const char *key, char **out);
bool gw_cnode_field_enum(gw_cnode_ctx_t *c, const gw_cnode_t *map, const char *key,
                         const char *const *names, int *out);

#endif
