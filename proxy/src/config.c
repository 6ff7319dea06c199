/*
 * config.c: configuration options of pulse-proxy.
 *
 * Every option is one row of `options` below: its name (also the YAML key and,
 * upper-cased with a PULSE_ prefix, the environment variable), its type, where
 * it lives in pulse_config_t, its default, its range, and whether SIGHUP can
 * change it.  Loading applies defaults, then the file, then the environment.
 *
 * Ownership: the published configuration is reference counted; the main thread
 * publishes, request handlers and the catalog thread acquire and release.  The
 * mutex guards the `current` pointer and the reference counts.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>
#include "config.h"
#include "cors_origins.h"
#include "log.h"

/* OPT_LIST: a string holding one entry per line; a YAML sequence of scalars, or a scalar whose entries are separated by
   ';' (the environment) */
typedef enum { OPT_STR, OPT_INT, OPT_LIST } opt_type_t;

typedef struct {
    const char *name;
    opt_type_t type;
    size_t offset;
    const char *def;
    long min, max;
    int reloadable;
} opt_t;

#define OFF(f) offsetof(pulse_config_t, f)

/* clang-format off */
static const opt_t options[] = {
    /* name              type     offset                               default           min  max      reload */
    {"listen",            OPT_STR, OFF(listen),                         "127.0.0.1:8080", 0,   0,       0},
    {"pg_url",            OPT_STR, OFF(pg_url),                         "dbname=pulse",   0,   0,       0},
    {"pg_control_url",    OPT_STR, OFF(pg_control_url),                 "",               0,   0,       0},
    {"jwt_secret",        OPT_STR, OFF(jwt_secret),                     "",               0,   0,       1},
    {"access_log",        OPT_STR, OFF(access_log),                     "-",              0,   0,       0},
    {"redis_url",         OPT_STR, OFF(redis_url),                      "",               0,   0,       0},
    {"threads",           OPT_INT, OFF(threads),                        "0",              0,   256,     0},
    {"pool_size",         OPT_INT, OFF(pool_size),                      "4",              1,   512,     0},
    {"pool_max_prepared", OPT_INT, OFF(pool_max_prepared),              "128",            1,   100000,  0},
    {"queue_limit",       OPT_INT, OFF(queue_limit),                    "1024",           0,   1000000, 1},
    {"queue_timeout_ms",  OPT_INT, OFF(queue_timeout_ms),               "2000",           1,   600000,  0},
    {"queue_budget_read_ms", OPT_INT, OFF(queue_budget_ms[PULSE_CLASS_READ]), "200",        1,   600000,  0},
    {"queue_budget_search_ms", OPT_INT, OFF(queue_budget_ms[PULSE_CLASS_SEARCH]), "1000",   1,   600000,  0},
    {"queue_budget_write_ms", OPT_INT, OFF(queue_budget_ms[PULSE_CLASS_WRITE]), "500",      1,   600000,  0},
    {"queue_budget_batch_ms", OPT_INT, OFF(queue_budget_ms[PULSE_CLASS_BATCH]), "2000",     1,   600000,  0},
    {"call_timeout_ms",   OPT_INT, OFF(call_timeout_ms),                "60000",          100, INT_MAX, 0},
    {"timeout_read_ms",   OPT_INT, OFF(timeout_ms[PULSE_CLASS_READ]),   "2000",           0,   INT_MAX, 1},
    {"timeout_search_ms", OPT_INT, OFF(timeout_ms[PULSE_CLASS_SEARCH]), "5000",           0,   INT_MAX, 1},
    {"timeout_write_ms",  OPT_INT, OFF(timeout_ms[PULSE_CLASS_WRITE]),  "5000",           0,   INT_MAX, 1},
    {"timeout_batch_ms",  OPT_INT, OFF(timeout_ms[PULSE_CLASS_BATCH]),  "30000",          0,   INT_MAX, 1},
    {"body_limit",        OPT_INT, OFF(body_limit),                     "1048576",        64,  INT_MAX, 0},
    {"max_header_bytes",  OPT_INT, OFF(max_header_bytes),               "16384",          256, INT_MAX, 1},
    {"max_args",          OPT_INT, OFF(max_args),                       "32",             1,   1000,    1},
    {"retry_after",       OPT_INT, OFF(retry_after),                    "1",              0,   3600,    1},
    {"drain_timeout_ms",  OPT_INT, OFF(drain_timeout_ms),               "10000",          0,   600000,  1},
    {"cache_swr_read_ms", OPT_INT, OFF(swr_ms[PULSE_CLASS_READ]),       "10000",          0,   INT_MAX, 1},
    {"cache_swr_search_ms", OPT_INT, OFF(swr_ms[PULSE_CLASS_SEARCH]),   "10000",          0,   INT_MAX, 1},
    {"cache_sie_read_ms", OPT_INT, OFF(sie_ms[PULSE_CLASS_READ]),       "300000",         0,   INT_MAX, 1},
    {"cache_sie_search_ms", OPT_INT, OFF(sie_ms[PULSE_CLASS_SEARCH]),   "300000",         0,   INT_MAX, 1},
    {"redis_connect_timeout_ms", OPT_INT, OFF(redis_connect_timeout_ms), "200",           1,   60000,   0},
    {"redis_command_timeout_ms", OPT_INT, OFF(redis_command_timeout_ms), "50",            1,   60000,   0},
    {"redis_backoff_max_ms", OPT_INT, OFF(redis_backoff_max_ms),        "5000",           100, 600000,  0},
    {"cache_local_bytes", OPT_INT, OFF(cache_local_bytes),              "8388608",        0,   INT_MAX, 0},
    {"cache_keyed_tags",  OPT_INT, OFF(cache_keyed_tags),               "262144",         16,  INT_MAX, 0},
    {"invalidation_heartbeat_ms", OPT_INT, OFF(invalidation_heartbeat_ms), "100",        0,   60000,   0},
    {"invalidation_delivery_ms", OPT_INT, OFF(invalidation_delivery_ms), "150",          1,   600000,  0},
    {"invalidation_reconnect_ms", OPT_INT, OFF(invalidation_reconnect_ms), "1000",       100, 600000,  0},
    {"slo_read_p95_ms",   OPT_INT, OFF(slo_p95_ms[PULSE_CLASS_READ]),   "100",            1,   INT_MAX, 1},
    {"slo_read_p99_ms",   OPT_INT, OFF(slo_p99_ms[PULSE_CLASS_READ]),   "200",            1,   INT_MAX, 1},
    {"slo_search_p95_ms", OPT_INT, OFF(slo_p95_ms[PULSE_CLASS_SEARCH]), "500",            1,   INT_MAX, 1},
    {"slo_search_p99_ms", OPT_INT, OFF(slo_p99_ms[PULSE_CLASS_SEARCH]), "1000",           1,   INT_MAX, 1},
    {"slo_write_p95_ms",  OPT_INT, OFF(slo_p95_ms[PULSE_CLASS_WRITE]),  "200",            1,   INT_MAX, 1},
    {"slo_write_p99_ms",  OPT_INT, OFF(slo_p99_ms[PULSE_CLASS_WRITE]),  "500",            1,   INT_MAX, 1},
    {"slo_batch_p95_ms",  OPT_INT, OFF(slo_p95_ms[PULSE_CLASS_BATCH]),  "5000",           1,   INT_MAX, 1},
    {"slo_batch_p99_ms",  OPT_INT, OFF(slo_p99_ms[PULSE_CLASS_BATCH]),  "10000",          1,   INT_MAX, 1},
    {"slo_error_rate_ppm", OPT_INT, OFF(slo_error_rate_ppm),            "1000",           0,   1000000, 1},
    {"slo_window_ms",     OPT_INT, OFF(slo_window_ms),                  "10000",          100, 3600000, 1},
    {"ratelimit_read",    OPT_STR, OFF(ratelimit[PULSE_CLASS_READ]),    "",               0,   0,       1},
    {"ratelimit_search",  OPT_STR, OFF(ratelimit[PULSE_CLASS_SEARCH]),  "",               0,   0,       1},
    {"ratelimit_write",   OPT_STR, OFF(ratelimit[PULSE_CLASS_WRITE]),   "",               0,   0,       1},
    {"ratelimit_batch",   OPT_STR, OFF(ratelimit[PULSE_CLASS_BATCH]),   "",               0,   0,       1},
    {"otlp_endpoint",     OPT_STR, OFF(otlp_endpoint),                  "",               0,   0,       0},
    {"trace_service_name", OPT_STR, OFF(trace_service_name),            "pulse-proxy",    0,   0,       0},
    {"trace_sample_ppm",  OPT_INT, OFF(trace_sample_ppm),               "10000",          0,   1000000, 1},
    {"trace_slow_ms",     OPT_INT, OFF(trace_slow_ms),                  "0",              0,   INT_MAX, 1},
    {"request_timeout_ms", OPT_INT, OFF(request_timeout_ms),            "10000",          100, 600000,  0},
    {"live_max_streams",  OPT_INT, OFF(live_max_streams),               "10000",          0,   10000000, 1},
    {"live_max_streams_tenant", OPT_INT, OFF(live_max_streams_tenant),  "1000",           1,   10000000, 1},
    {"live_min_interval_ms", OPT_INT, OFF(live_min_interval_ms),        "20",             0,   60000,   0},
    {"live_heartbeat_ms", OPT_INT, OFF(live_heartbeat_ms),              "15000",          0,   3600000, 1},
    {"live_retry_ms",     OPT_INT, OFF(live_retry_ms),                  "1000",           0,   3600000, 1},
    {"live_allow_origin", OPT_STR, OFF(live_allow_origin),              "",               0,   0,       1},
    {"slo_live_p95_ms",   OPT_INT, OFF(slo_live_p95_ms),                "25",             1,   INT_MAX, 1},
    {"slo_live_p99_ms",   OPT_INT, OFF(slo_live_p99_ms),                "50",             1,   INT_MAX, 1},
    {"replica_urls",      OPT_LIST, OFF(replica_urls),                  "",               0,   0,       0},
    {"replica_max_lag_ms", OPT_INT, OFF(replica_max_lag_ms),            "1000",           0,   INT_MAX, 1},
    {"replica_wait_ms",   OPT_INT, OFF(replica_wait_ms),                "50",             0,   60000,   1},
    {"replica_check_ms",  OPT_INT, OFF(replica_check_ms),               "100",            10,  60000,   0},
    {"replica_lsn_cookie", OPT_STR, OFF(replica_lsn_cookie),            "",               0,   0,       1},
    {"replica_lsn_cookie_max_age", OPT_INT, OFF(replica_lsn_cookie_max_age), "10",        1,   86400,   1},
    {"ratelimit_legacy_headers", OPT_INT, OFF(ratelimit_legacy_headers), "0",             0,   1,       1},
    {"cors_origins",      OPT_LIST,OFF(cors_origins),                   "",               0,   0,       1},
    {"cors_max_age",      OPT_INT, OFF(cors_max_age),                   "600",            0,   86400,   1},
    {"openapi",           OPT_INT, OFF(openapi),                        "1",              0,   1,       1},
    {"docs_dir",          OPT_STR, OFF(docs_dir),                       "",               0,   0,       1},
};
/* clang-format on */
#define NOPTIONS (sizeof(options) / sizeof(options[0]))

static pthread_mutex_t conf_mutex = PTHREAD_MUTEX_INITIALIZER;
static pulse_config_t *current;

static const opt_t *find_option(const char *name)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (strcmp(options[i].name, name) == 0)
            return &options[i];
    return NULL;
}

/* a list's text, one entry per line, from entries separated by `sep` (spaces around them and empty ones dropped); appended
   to `prev` (NULL: none); NULL when out of memory */
static char *list_text(const char *prev, const char *value, char sep)
{
    size_t plen = prev != NULL ? strlen(prev) : 0;
    char *out = malloc(plen + strlen(value) + 2), *o = out;
    if (out == NULL)
        return NULL;
    if (plen != 0)
        memcpy(o, prev, plen);
    o += plen;
    for (const char *p = value; *p != '\0';) {
        const char *end = strchr(p, sep);
        if (end == NULL)
            end = p + strlen(p);
        const char *b = p, *e = end;
        while (b < e && isspace((unsigned char)*b))
            b++;
        while (e > b && isspace((unsigned char)e[-1]))
            e--;
        if (e > b) {
            if (o != out)
                *o++ = '\n';
            memcpy(o, b, (size_t)(e - b));
            o += e - b;
        }
        p = *end != '\0' ? end + 1 : end;
    }
    *o = '\0';
    return out;
}

static int set_option(pulse_config_t *conf, const opt_t *o, const char *value, char *err, size_t errlen)
{
    char *slot = (char *)conf + o->offset;
    if (o->type == OPT_STR || o->type == OPT_LIST) {
        char *copy = o->type == OPT_LIST ? list_text(NULL, value, ';') : strdup(value);
        if (copy == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        free(*(char **)slot);
        *(char **)slot = copy;
        return 0;
    }
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    while (*end != '\0' && isspace((unsigned char)*end))
        end++;
    if (errno != 0 || end == value || *end != '\0' || v < o->min || v > o->max) {
        snprintf(err, errlen, "option %s: \"%s\" is not an integer in [%ld, %ld]", o->name, value, o->min, o->max);
        return -1;
    }
    *(int *)slot = (int)v;
    return 0;
}

int pulse_config_set(pulse_config_t *conf, const char *name, const char *value, char *err, size_t errlen)
{
    const opt_t *o = find_option(name);
    if (o == NULL) {
        snprintf(err, errlen, "unknown option \"%s\"", name);
        return -1;
    }
    return set_option(conf, o, value, err, errlen);
}

void pulse_config_free(pulse_config_t *conf)
{
    if (conf == NULL)
        return;
    for (size_t i = 0; i < NOPTIONS; i++)
        if (options[i].type != OPT_INT)
            free(*(char **)((char *)conf + options[i].offset));
    free(conf);
}

/* Reads a flat YAML mapping of scalars with libyaml's event parser. */
static int load_file(pulse_config_t *conf, const char *path, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    yaml_parser_t parser;
    yaml_event_t ev;
    int rc = -1, depth = 0, done = 0;
    char *key = NULL;
    char **list = NULL; /* the list option whose sequence is being read */
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, fp);
    while (!done) {
        if (!yaml_parser_parse(&parser, &ev)) {
            snprintf(err, errlen, "%s:%zu: %s", path, parser.problem_mark.line + 1,
                     parser.problem != NULL ? parser.problem : "syntax error");
            goto out;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_MAPPING_START_EVENT:
            if (++depth > 1) {
                snprintf(err, errlen, "%s:%zu: nested mappings are not options", path, ev.start_mark.line + 1);
                yaml_event_delete(&ev);
                goto out;
            }
            break;
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        case YAML_SEQUENCE_START_EVENT: {
            const opt_t *o = key != NULL && list == NULL && depth == 1 ? find_option(key) : NULL;
            if (o == NULL || o->type != OPT_LIST) {
                snprintf(err, errlen, "%s:%zu: lists are not options", path, ev.start_mark.line + 1);
                yaml_event_delete(&ev);
                goto out;
            }
            list = (char **)((char *)conf + o->offset);
            (*list)[0] = '\0';
            break;
        }
        case YAML_SEQUENCE_END_EVENT:
            list = NULL;
            free(key);
            key = NULL;
            break;
        case YAML_SCALAR_EVENT:
            if (list != NULL) { /* one entry, taken whole (';' included) */
                char *v = (char *)ev.data.scalar.value, *next;
                if (strchr(v, '\n') != NULL || (next = list_text(*list, v, '\n')) == NULL) {
                    snprintf(err, errlen, "%s:%zu: %s: an entry must be one line", path, ev.start_mark.line + 1, key);
                    yaml_event_delete(&ev);
                    goto out;
                }
                free(*list);
                *list = next;
                break;
            }
            if (depth != 1) {
                snprintf(err, errlen, "%s: the file must be a mapping of option: value", path);
                yaml_event_delete(&ev);
                goto out;
            }
            if (key == NULL) {
                key = strdup((const char *)ev.data.scalar.value);
            } else {
                int r = pulse_config_set(conf, key, (const char *)ev.data.scalar.value, err, errlen);
                free(key);
                key = NULL;
                if (r != 0) {
                    yaml_event_delete(&ev);
                    goto out;
                }
            }
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    rc = 0;
out:
    free(key);
    yaml_parser_delete(&parser);
    fclose(fp);
    return rc;
}

pulse_config_t *pulse_config_load(const char *path, char *err, size_t errlen)
{
    pulse_config_t *conf = calloc(1, sizeof(*conf));
    if (conf == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < NOPTIONS; i++)
        if (set_option(conf, &options[i], options[i].def, err, errlen) != 0)
            goto fail;
    if (path != NULL && load_file(conf, path, err, errlen) != 0)
        goto fail;
    for (size_t i = 0; i < NOPTIONS; i++) {
        char env[64] = "PULSE_";
        size_t n = strlen(env);
        for (const char *p = options[i].name; *p != '\0' && n + 1 < sizeof(env); p++)
            env[n++] = (char)toupper((unsigned char)*p);
        env[n] = '\0';
        const char *v = getenv(env);
        if (v != NULL && set_option(conf, &options[i], v, err, errlen) != 0)
            goto fail;
    }
    if (conf->pg_control_url[0] == '\0' && set_option(conf, find_option("pg_control_url"), conf->pg_url, err, errlen) != 0)
        goto fail;
    if (conf->jwt_secret[0] == '\0') {
        snprintf(err, errlen, "jwt_secret is not set (option jwt_secret or PULSE_JWT_SECRET)");
        goto fail;
    }
    if (strspn(conf->replica_lsn_cookie, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.") !=
        strlen(conf->replica_lsn_cookie)) {
        snprintf(err, errlen, "replica_lsn_cookie: a cookie name is letters, digits, '_', '-' and '.'");
        goto fail;
    }
    if (pulse_cors_check_origins(conf->cors_origins, err, errlen) != 0)
        goto fail;
    return conf;
fail:
    pulse_config_free(conf);
    return NULL;
}

pulse_config_t *pulse_config_merge_reload(const pulse_config_t *cur, const pulse_config_t *next)
{
    pulse_config_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    for (size_t i = 0; i < NOPTIONS; i++) {
        const opt_t *o = &options[i];
        const pulse_config_t *src = o->reloadable ? next : cur;
        const char *slot = (const char *)src + o->offset;
        const char *other = (const char *)(o->reloadable ? cur : next) + o->offset;
        if (o->type != OPT_INT) {
            char **dst = (char **)((char *)m + o->offset);
            if ((*dst = strdup(*(char *const *)slot)) == NULL) {
                pulse_config_free(m);
                return NULL;
            }
            if (!o->reloadable && strcmp(*(char *const *)slot, *(char *const *)other) != 0)
                pulse_log_msg("warning", NULL, "reload: option %s cannot change without a restart", o->name);
        } else {
            *(int *)((char *)m + o->offset) = *(const int *)slot;
            if (!o->reloadable && *(const int *)slot != *(const int *)other)
                pulse_log_msg("warning", NULL, "reload: option %s cannot change without a restart", o->name);
        }
    }
    return m;
}

void pulse_config_publish(pulse_config_t *conf)
{
    pulse_config_t *old;
    pthread_mutex_lock(&conf_mutex);
    if (conf != NULL)
        conf->_refcnt = 1; /* the reference of `current` */
    old = current;
    current = conf;
    pthread_mutex_unlock(&conf_mutex);
    if (old != NULL)
        pulse_config_release(old);
}

pulse_config_t *pulse_config_acquire(void)
{
    pthread_mutex_lock(&conf_mutex);
    pulse_config_t *c = current;
    if (c != NULL)
        c->_refcnt++;
    pthread_mutex_unlock(&conf_mutex);
    return c;
}

void pulse_config_release(pulse_config_t *conf)
{
    int last;
    pthread_mutex_lock(&conf_mutex);
    last = --conf->_refcnt == 0;
    pthread_mutex_unlock(&conf_mutex);
    if (last)
        pulse_config_free(conf);
}

static const char *class_names[PULSE_CLASS_COUNT] = {"read", "search", "write", "batch"};

int pulse_config_class_from_name(const char *name)
{
    for (int i = 0; i < PULSE_CLASS_COUNT; i++)
        if (strcmp(class_names[i], name) == 0)
            return i;
    return -1;
}

const char *pulse_config_class_name(pulse_class_t cls)
{
    return (unsigned)cls < PULSE_CLASS_COUNT ? class_names[cls] : "?";
}
