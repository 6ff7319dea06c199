/*
 * cors_test.c: the cors_origins option (cors.c): which lists the
 * configuration takes, and which Origin values they allow.
 */
#include "config.h"
#include "cors.h"
#include "cors_origins.h"
#include "test.h"

static int allowed(const char *list, const char *origin)
{
    return pulse_cors_origin_allowed(list, origin, strlen(origin));
}

static void test_check(void)
{
    static const char *good[] = {"",
                                 "   ",
                                 "*",
                                 "https://app.example.com",
                                 "http://127.0.0.1:8080",
                                 "https://a.example, http://b.example:3000 ,*",
                                 "HTTPS://APP.Example.COM",
                                 "http://[::1]:8080",
                                 "http://[2001:db8::1]",
                                 "chrome-extension://abcdef",
                                 "http://localhost:65535"};
    static const struct {
        const char *in, *why;
    } bad[] = {{"https://app.example.com/", "no path"},
               {"https://app.example.com/x", "no path"},
               {"app.example.com", "scheme://host"},
               {"https://", "needs a host"},
               {"https://a.example:0", "port is 1 to 65535"},
               {"https://a.example:65536", "port is 1 to 65535"},
               {"https://a.example:", "port is 1 to 65535"},
               {"https://a.example:1234567", "port is 1 to 65535"},
               {"https://a.example,", "empty item"},
               {",https://a.example", "empty item"},
               {"https://a.example,,https://b.example", "empty item"},
               {"null", "scheme://host"},
               {"https://a b.example", "scheme://host"},
               {"https://a.example?x", "scheme://host"},
               {"https://user@a.example", "scheme://host"},
               {"http://[::1", "unterminated"},
               {"http://[]", "empty or unterminated"},
               {"http://[::g]", "IPv6"},
               {"1http://a.example", "starts with its scheme"},
               {"**", "starts with its scheme"}};
    char err[256], name[160];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        err[0] = '\0';
        snprintf(name, sizeof(name), "check: \"%s\" is taken", good[i]);
        CHECK(pulse_cors_check_origins(good[i], err, sizeof(err)) == 0, name);
        if (err[0] != '\0')
            printf("#   err: %s\n", err);
    }
    CHECK(pulse_cors_check_origins(NULL, err, sizeof(err)) == 0, "check: NULL is no CORS");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        int rc = pulse_cors_check_origins(bad[i].in, err, sizeof(err));
        snprintf(name, sizeof(name), "check: \"%s\" is refused (%s)", bad[i].in, bad[i].why);
        CHECK(rc == -1 && strstr(err, bad[i].why) != NULL && strstr(err, "cors_origins") != NULL, name);
        if (rc != -1 || strstr(err, bad[i].why) == NULL)
            printf("#   err: %s\n", err);
    }
}

static void test_match(void)
{
    char err[256];
    const char *list = "https://a.example, http://127.0.0.1:8080";
    CHECK(allowed(list, "https://a.example") == 2, "match: a listed origin");
    CHECK(allowed(list, "http://127.0.0.1:8080") == 2, "match: a listed origin with a port (second item, blanks trimmed)");
    CHECK(allowed(list, "HTTPS://A.EXAMPLE") == 2, "match: case-insensitive");
    CHECK(allowed(list, "https://a.example:443") == 0, "match: another port is another origin");
    CHECK(allowed(list, "http://a.example") == 0, "match: another scheme is another origin");
    CHECK(allowed(list, "https://a.example.evil") == 0, "match: no prefix match");
    CHECK(allowed(list, "https://evil-a.example") == 0, "match: no suffix match");
    CHECK(allowed(list, "https://a.exampl") == 0, "match: a prefix of an item is not it");
    CHECK(allowed(list, "http://127.0.0.1:80") == 0, "match: a prefix of a port is not it");
    CHECK(allowed(list, "") == 0, "match: an empty Origin");
    CHECK(allowed(list, "null") == 0, "match: null (opaque origins)");
    CHECK(allowed("*", "https://anything.example") == 1, "match: * allows any origin");
    CHECK(allowed("*", "null") == 0, "match: * does not answer null with its origin");
    CHECK(allowed("https://b.example, *", "https://c.example") == 1, "match: * anywhere in the list");
    CHECK(allowed("", "https://a.example") == 0, "match: an empty list allows nothing");
    CHECK(allowed("https://b.example\nhttps://a.example", "https://a.example") == 2 &&
              allowed("https://b.example\nhttps://a.example", "https://b.example") == 2 &&
              allowed("https://b.example\nhttps://a.example", "https://c.example") == 0,
          "match: one origin per line (a YAML sequence)");
    CHECK(pulse_cors_check_origins("https://b.example\n*", err, sizeof(err)) == 0 &&
              pulse_cors_check_origins("https://b.example\nhttps://a.example/x", err, sizeof(err)) == -1,
          "check: one origin per line, each checked");
    CHECK(pulse_cors_origin_allowed(NULL, "https://a.example", 17) == 0, "match: no list allows nothing");
    CHECK(pulse_cors_origin_allowed(list, "https://a.examplex", 17) == 2, "match: by length, not by NUL");
}

int main(void)
{
    test_check();
    test_match();
    TEST_DONE();
}
