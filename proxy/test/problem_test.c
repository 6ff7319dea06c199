/*
 * problem_test.c: problem documents and the SQLSTATE mapping (problem.c).
 */
#include <jansson.h>
#include <stdlib.h>
#include "problem.h"
#include "test.h"

int main(void)
{
    size_t len = 0;
    char *doc = pulse_problem_render(404, "no such endpoint", "req-1", &len);
    CHECK_STR(doc,
              "{\"type\":\"about:blank\",\"title\":\"Not Found\",\"status\":404,\"detail\":\"no such endpoint\","
              "\"request_id\":\"req-1\"}",
              "404 document");
    CHECK(doc != NULL && len == strlen(doc), "length");
    free(doc);
    doc = pulse_problem_render(500, NULL, NULL, &len);
    CHECK_STR(doc, "{\"type\":\"about:blank\",\"title\":\"Internal Server Error\",\"status\":500}",
              "detail and request id omitted");
    free(doc);
    doc = pulse_problem_render(400, "quote \" and \\ and \n", "r", &len);
    json_t *j = json_loads(doc, 0, NULL);
    CHECK_STR(json_string_value(json_object_get(j, "detail")), "quote \" and \\ and \n", "detail is escaped");
    json_decref(j);
    free(doc);
    doc = pulse_problem_render(400, "bad \xff utf-8", "r", &len);
    j = doc != NULL ? json_loads(doc, 0, NULL) : NULL;
    CHECK(j != NULL, "invalid UTF-8 in detail still renders valid JSON");
    json_decref(j);
    free(doc);

    static const struct {
        const char *sqlstate;
        int status;
    } cases[] = {
        {"22023", 400}, {"22P02", 400}, {"22003", 400}, {"42883", 400}, {"42P18", 400}, {"42501", 403},
        {"57014", 503}, {"08006", 503}, {"57P01", 503}, {"53300", 503}, {"40001", 503}, {"23505", 409},
        {"P0001", 500}, {"42P01", 500}, {"XX000", 500}, {NULL, 500},    {"", 500},      {"22", 500},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char name[64];
        snprintf(name, sizeof(name), "SQLSTATE %s -> %d", cases[i].sqlstate != NULL ? cases[i].sqlstate : "(null)",
                 cases[i].status);
        CHECK(pulse_problem_status_for_sqlstate(cases[i].sqlstate) == cases[i].status, name);
    }
    CHECK(pulse_problem_detail_is_public(400) && pulse_problem_detail_is_public(403), "4xx details are public");
    CHECK(!pulse_problem_detail_is_public(500) && !pulse_problem_detail_is_public(503), "5xx details are not");
    CHECK_STR(pulse_problem_title(431), "Request Header Fields Too Large", "title of 431");
    CHECK_STR(pulse_problem_title(299), "Error", "title of an unknown status");
    TEST_DONE();
}
