/*
 * config_test.c: the options table, the YAML file, environment overrides
 * and reload merging (config.c).
 */
#include <stdlib.h>
#include <unistd.h>
#include "config.h"
#include "test.h"

static char path[64];

static void write_file(const char *text)
{
    FILE *fp = fopen(path, "w");
    fputs(text, fp);
    fclose(fp);
}

int main(void)
{
    char err[256] = "";
    int fd;
    snprintf(path, sizeof(path), "/tmp/pulse-config-test.XXXXXX");
    fd = mkstemp(path);
    close(fd);
    unsetenv("PULSE_LISTEN");
    unsetenv("PULSE_PG_URL");
    unsetenv("PULSE_POOL_SIZE");

    setenv("PULSE_JWT_SECRET", "s3", 1);
    pulse_config_t *c = pulse_config_load(NULL, err, sizeof(err));
    CHECK(c != NULL, "defaults load");
    CHECK_STR(c->listen, "127.0.0.1:8080", "default listen");
    CHECK(c->pool_size == 4 && c->max_args == 32 && c->timeout_ms[PULSE_CLASS_READ] == 2000, "default integers");
    CHECK(c->redis_url[0] == '\0' && c->swr_ms[PULSE_CLASS_READ] == 10000 && c->sie_ms[PULSE_CLASS_SEARCH] == 300000 &&
              c->swr_ms[PULSE_CLASS_WRITE] == 0 && c->redis_command_timeout_ms == 50 && c->redis_connect_timeout_ms == 200 &&
              c->redis_backoff_max_ms == 5000,
          "cache defaults: no Redis, windows per class");
    CHECK(pulse_config_set(c, "cache_swr_search_ms", "2500", err, sizeof(err)) == 0 && c->swr_ms[PULSE_CLASS_SEARCH] == 2500 &&
              pulse_config_set(c, "redis_command_timeout_ms", "0", err, sizeof(err)) == -1,
          "cache options set and range-checked");
    CHECK_STR(c->pg_control_url, c->pg_url, "pg_control_url defaults to pg_url");
    CHECK_STR(c->jwt_secret, "s3", "secret from PULSE_JWT_SECRET");
    pulse_config_free(c);

    unsetenv("PULSE_JWT_SECRET");
    c = pulse_config_load(NULL, err, sizeof(err));
    CHECK(c == NULL && strstr(err, "jwt_secret") != NULL, "a secret is required");

    write_file("# comment\nlisten: 0.0.0.0:9000\npg_url: \"host=db dbname=x\"\njwt_secret: abc\npool_size: 8\n"
               "timeout_search_ms: 1234\n");
    c = pulse_config_load(path, err, sizeof(err));
    CHECK(c != NULL, "file loads");
    CHECK_STR(c ? c->listen : NULL, "0.0.0.0:9000", "listen from file");
    CHECK_STR(c ? c->pg_url : NULL, "host=db dbname=x", "quoted string from file");
    CHECK(c && c->pool_size == 8 && c->timeout_ms[PULSE_CLASS_SEARCH] == 1234, "integers from file");
    pulse_config_free(c);

    setenv("PULSE_LISTEN", "127.0.0.1:7000", 1);
    setenv("PULSE_POOL_SIZE", "2", 1);
    c = pulse_config_load(path, err, sizeof(err));
    CHECK_STR(c ? c->listen : NULL, "127.0.0.1:7000", "environment overrides the file (string)");
    CHECK(c && c->pool_size == 2, "environment overrides the file (integer)");
    pulse_config_free(c);
    setenv("PULSE_POOL_SIZE", "lots", 1);
    c = pulse_config_load(path, err, sizeof(err));
    CHECK(c == NULL && strstr(err, "pool_size") != NULL, "bad integer in the environment is an error");
    unsetenv("PULSE_POOL_SIZE");
    unsetenv("PULSE_LISTEN");

    write_file("jwt_secret: abc\nbogus: 1\n");
    c = pulse_config_load(path, err, sizeof(err));
    CHECK(c == NULL && strstr(err, "unknown option \"bogus\"") != NULL, "unknown option is an error");
    write_file("jwt_secret: abc\npool_size: 0\n");
    c = pulse_config_load(path, err, sizeof(err));
    CHECK(c == NULL && strstr(err, "pool_size") != NULL, "out-of-range integer is an error");
    write_file("jwt_secret: abc\npool_size: 3x\n");
    c = pulse_config_load(path, err, sizeof(err));
    CHECK(c == NULL, "trailing garbage in an integer is an error");
    write_file("jwt_secret: abc\nlisten: {a: 1}\n");
    c = pulse_config_load(path, err, sizeof(err));
    CHECK(c == NULL && strstr(err, "nested") != NULL, "nested mapping is an error");
    write_file("jwt_secret: [1, 2]\n");
    c = pulse_config_load(path, err, sizeof(err));
    CHECK(c == NULL, "list is an error");
    write_file("jwt_secret: \"unterminated\n");
    c = pulse_config_load(path, err, sizeof(err));
    CHECK(c == NULL && strstr(err, path) != NULL, "YAML syntax error names the file");
    c = pulse_config_load("/nonexistent/pulse.yaml", err, sizeof(err));
    CHECK(c == NULL && strstr(err, "cannot open") != NULL, "missing file is an error");

    /* reload: reloadable options change, the others stay */
    write_file("jwt_secret: one\nlisten: 127.0.0.1:1\nmax_args: 5\n");
    pulse_config_t *cur = pulse_config_load(path, err, sizeof(err));
    write_file("jwt_secret: two\nlisten: 127.0.0.1:2\nmax_args: 6\n");
    pulse_config_t *next = pulse_config_load(path, err, sizeof(err));
    pulse_config_t *m = cur && next ? pulse_config_merge_reload(cur, next) : NULL;
    CHECK_STR(m ? m->jwt_secret : NULL, "two", "reload changes jwt_secret");
    CHECK(m && m->max_args == 6, "reload changes max_args");
    CHECK_STR(m ? m->listen : NULL, "127.0.0.1:1", "reload keeps listen");
    pulse_config_free(cur);
    pulse_config_free(next);

    /* publish / acquire / release */
    pulse_config_publish(m);
    pulse_config_t *a = pulse_config_acquire();
    CHECK(a == m, "acquire returns the published configuration");
    pulse_config_publish(NULL);
    CHECK_STR(a->jwt_secret, "two", "a held configuration outlives its replacement");
    pulse_config_release(a);

    CHECK(pulse_config_class_from_name("search") == PULSE_CLASS_SEARCH && pulse_config_class_from_name("x") == -1, "class names");
    unlink(path);
    TEST_DONE();
}
