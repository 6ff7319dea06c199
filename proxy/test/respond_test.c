/*
 * rpc_test.c: the pure helpers of the HTTP side (rpc.c).
 */
#include "respond.h"
#include "test.h"

int main(void)
{
    char id[65], id2[65];
    pulse_respond_request_id("abc-123_x.y:z", 13, id);
    CHECK_STR(id, "abc-123_x.y:z", "a valid X-Request-Id is kept");
    pulse_respond_request_id("abc def", 7, id);
    CHECK(strlen(id) == 32 && strcmp(id, "abc def") != 0, "spaces: replaced by a generated id");
    pulse_respond_request_id("x\r\nSet-Cookie: a", 16, id);
    CHECK(strlen(id) == 32 && strchr(id, '\n') == NULL, "header injection: replaced");
    char long_id[80];
    memset(long_id, 'a', sizeof(long_id));
    pulse_respond_request_id(long_id, 65, id);
    CHECK(strlen(id) == 32, "over 64 characters: replaced");
    pulse_respond_request_id(long_id, 64, id);
    CHECK(strlen(id) == 64, "64 characters: kept");
    pulse_respond_request_id(NULL, 0, id);
    pulse_respond_request_id("", 0, id2);
    CHECK(strlen(id) == 32 && strspn(id, "0123456789abcdef") == 32, "generated ids are 32 hex digits");
    CHECK(strcmp(id, id2) != 0, "generated ids differ");
    TEST_DONE();
}
