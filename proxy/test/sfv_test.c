/*
 * sfv_test.c: structured field serialization (sfv.h) against RFC 9651:
 * each bare item type, parameters, lists, and every refusal.
 */
#include <stdint.h>
#include "sfv.h"
#include "test.h"

static char buf[256];

/* the value of a one-item field, or "(refused)" */
#define ONE(stmt)                                                                                                                  \
    ({                                                                                                                             \
        pulse_sfv_t s_;                                                                                                            \
        pulse_sfv_init(&s_, buf, sizeof(buf));                                                                                     \
        pulse_sfv_t *s = &s_;                                                                                                      \
        stmt;                                                                                                                      \
        pulse_sfv_end(s) < 0 ? "(refused)" : buf;                                                                                  \
    })

static void test_items(void)
{
    CHECK_STR(ONE(pulse_sfv_integer(s, 0)), "0", "integer 0");
    CHECK_STR(ONE(pulse_sfv_integer(s, -42)), "-42", "negative integer");
    CHECK_STR(ONE(pulse_sfv_integer(s, 999999999999999LL)), "999999999999999", "largest integer (15 digits)");
    CHECK_STR(ONE(pulse_sfv_integer(s, -999999999999999LL)), "-999999999999999", "smallest integer");
    CHECK_STR(ONE(pulse_sfv_integer(s, 1000000000000000LL)), "(refused)", "16 digits are refused");
    CHECK_STR(ONE(pulse_sfv_integer(s, INT64_MIN)), "(refused)", "INT64_MIN is refused");

    CHECK_STR(ONE(pulse_sfv_string(s, "burst", 5)), "\"burst\"", "string");
    CHECK_STR(ONE(pulse_sfv_string(s, "", 0)), "\"\"", "empty string");
    CHECK_STR(ONE(pulse_sfv_string(s, "a\"b\\c", 5)), "\"a\\\"b\\\\c\"", "string: quote and backslash escaped");
    CHECK_STR(ONE(pulse_sfv_string(s, " ~", 2)), "\" ~\"", "string: 0x20 and 0x7e allowed");
    CHECK_STR(ONE(pulse_sfv_string(s, "a\tb", 3)), "(refused)", "string: a control character is refused");
    CHECK_STR(ONE(pulse_sfv_string(s, "\x7f", 1)), "(refused)", "string: DEL is refused");
    CHECK_STR(ONE(pulse_sfv_string(s, "caf\xc3\xa9", 5)), "(refused)", "string: non-ASCII is refused (a Display String)");
    CHECK_STR(ONE(pulse_sfv_string(s, "a\0b", 3)), "(refused)", "string: NUL is refused");

    CHECK_STR(ONE(pulse_sfv_token(s, "foo123/456", 10)), "foo123/456", "token");
    CHECK_STR(ONE(pulse_sfv_token(s, "*a:b!#$%&'*+-.^_`|~", 19)), "*a:b!#$%&'*+-.^_`|~", "token: every tchar, ':' and '/'");
    CHECK_STR(ONE(pulse_sfv_token(s, "1abc", 4)), "(refused)", "token starting with a digit is refused");
    CHECK_STR(ONE(pulse_sfv_token(s, "", 0)), "(refused)", "empty token is refused");
    CHECK_STR(ONE(pulse_sfv_token(s, "a b", 3)), "(refused)", "token with a space is refused");
    CHECK_STR(ONE(pulse_sfv_token(s, "a\"", 2)), "(refused)", "token with a quote is refused");

    /* RFC 9651 4.1.8 and the RFC 4648 test vectors */
    CHECK_STR(ONE(pulse_sfv_bytes(s, "pretend this is binary content.", 31)),
              ":cHJldGVuZCB0aGlzIGlzIGJpbmFyeSBjb250ZW50Lg==:", "byte sequence: the RFC's example");
    CHECK_STR(ONE(pulse_sfv_bytes(s, "", 0)), "::", "empty byte sequence");
    CHECK_STR(ONE(pulse_sfv_bytes(s, "f", 1)), ":Zg==:", "bytes f");
    CHECK_STR(ONE(pulse_sfv_bytes(s, "fo", 2)), ":Zm8=:", "bytes fo");
    CHECK_STR(ONE(pulse_sfv_bytes(s, "foo", 3)), ":Zm9v:", "bytes foo");
    CHECK_STR(ONE(pulse_sfv_bytes(s, "foobar", 6)), ":Zm9vYmFy:", "bytes foobar");
    CHECK_STR(ONE(pulse_sfv_bytes(s, "\xff\xfe\x00", 3)), "://4A:", "bytes: high bytes and NUL use the standard alphabet");
}

static void test_params_lists(void)
{
    CHECK_STR(ONE({
                  pulse_sfv_member(s);
                  pulse_sfv_string(s, "burst", 5);
                  pulse_sfv_param(s, "q");
                  pulse_sfv_integer(s, 100);
                  pulse_sfv_param(s, "w");
                  pulse_sfv_integer(s, 60);
                  pulse_sfv_member(s);
                  pulse_sfv_string(s, "daily", 5);
                  pulse_sfv_param(s, "q");
                  pulse_sfv_integer(s, 1000);
                  pulse_sfv_param(s, "w");
                  pulse_sfv_integer(s, 86400);
              }),
              "\"burst\";q=100;w=60, \"daily\";q=1000;w=86400", "a list of two parameterized items (the draft's example)");
    CHECK_STR(ONE({
                  pulse_sfv_string(s, "t", 1);
                  pulse_sfv_param(s, "pk");
                  pulse_sfv_bytes(s, "7", 1);
                  pulse_sfv_param_true(s, "x-flag");
                  pulse_sfv_param(s, "qu");
                  pulse_sfv_string(s, "requests", 8);
              }),
              "\"t\";pk=:Nw==:;x-flag;qu=\"requests\"", "byte sequence, boolean true and string parameters");
    CHECK_STR(ONE({
                  pulse_sfv_string(s, "a", 1);
                  pulse_sfv_param(s, "Q");
                  pulse_sfv_integer(s, 1);
              }),
              "(refused)", "an upper-case key is refused");
    CHECK_STR(ONE({
                  pulse_sfv_string(s, "a", 1);
                  pulse_sfv_param(s, "1x");
                  pulse_sfv_integer(s, 1);
              }),
              "(refused)", "a key starting with a digit is refused");
    CHECK_STR(ONE({
                  pulse_sfv_string(s, "a", 1);
                  pulse_sfv_param(s, "*a_b-c.d9");
                  pulse_sfv_integer(s, 1);
              }),
              "\"a\";*a_b-c.d9=1", "a key with every allowed character");
    CHECK_STR(ONE({
                  pulse_sfv_string(s, "a", 1);
                  pulse_sfv_param(s, "");
                  pulse_sfv_integer(s, 1);
              }),
              "(refused)", "an empty key is refused");
    CHECK_STR(ONE({
                  pulse_sfv_integer(s, 1LL << 60);
                  pulse_sfv_string(s, "after", 5);
              }),
              "(refused)", "a refusal sticks: nothing is written after it");

    /* the buffer bound */
    char small[8];
    pulse_sfv_t s;
    pulse_sfv_init(&s, small, sizeof(small));
    pulse_sfv_string(&s, "abcde", 5); /* 7 bytes + NUL: fits exactly */
    CHECK(pulse_sfv_end(&s) == 7 && strcmp(small, "\"abcde\"") == 0, "a value that fills the buffer exactly fits");
    pulse_sfv_init(&s, small, sizeof(small));
    pulse_sfv_string(&s, "abcdef", 6);
    CHECK(pulse_sfv_end(&s) == -1 && small[0] == '\0', "a value one byte too long is refused, the buffer left empty");
    pulse_sfv_init(&s, small, 0);
    CHECK(pulse_sfv_end(&s) == -1, "a buffer of 0 bytes refuses everything");
}

int main(void)
{
    test_items();
    test_params_lists();
    TEST_DONE();
}
