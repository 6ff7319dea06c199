/*
 * problem.c: problem documents and the SQLSTATE → HTTP status table.
 */
#include <jansson.h>
#include <string.h>
#include "problem.h"

const char *pulse_problem_title(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}

char *pulse_problem_render(int status, const char *detail, const char *request_id, size_t *len)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "type", json_string("about:blank"));
    json_object_set_new(o, "title", json_string(pulse_problem_title(status)));
    json_object_set_new(o, "status", json_integer(status));
    /* json_string refuses invalid UTF-8: fall back to a lossy copy */
    if (detail != NULL) {
        json_t *d = json_string(detail);
        if (d == NULL)
            d = json_string("(detail is not valid UTF-8)");
        json_object_set_new(o, "detail", d);
    }
    if (request_id != NULL)
        json_object_set_new(o, "request_id", json_string(request_id));
    char *s = json_dumps(o, JSON_PRESERVE_ORDER | JSON_COMPACT);
    json_decref(o);
    if (s != NULL)
        *len = strlen(s);
    return s;
}

static const struct {
    const char *code; /* exact SQLSTATE, or a two-character class */
    int status;
} sqlstate_map[] = {
    /* exact codes first */
    {"42883", 400}, /* undefined_function: argument types do not match */
    {"42P18", 400}, /* indeterminate_datatype */
    {"42725", 400}, /* ambiguous_function */
    {"42501", 403}, /* insufficient_privilege, also row-level security */
    {"57014", 503}, /* query_canceled: statement_timeout */
    {"57P01", 503}, /* admin_shutdown */
    {"57P02", 503}, /* crash_shutdown */
    {"57P03", 503}, /* cannot_connect_now */
    {"40001", 503}, /* serialization_failure */
    {"40P01", 503}, /* deadlock_detected */
    /* then classes */
    {"22", 400}, /* data_exception: bad input, bad cursor */
    {"23", 409}, /* integrity_constraint_violation */
    {"08", 503}, /* connection_exception */
    {"53", 503}, /* insufficient_resources */
};

int pulse_problem_status_for_sqlstate(const char *sqlstate)
{
    if (sqlstate == NULL || strlen(sqlstate) != 5)
        return 500;
    for (size_t i = 0; i < sizeof(sqlstate_map) / sizeof(sqlstate_map[0]); i++) {
        size_t n = strlen(sqlstate_map[i].code);
        if (strncmp(sqlstate, sqlstate_map[i].code, n) == 0)
            return sqlstate_map[i].status;
    }
    return 500;
}

int pulse_problem_detail_is_public(int status)
{
    return status == 400 || status == 403 || status == 409;
}
