-- bench/scenarios/hit.lua: one request again and again (scenario hits, the
-- cached-hit ceiling), for wrk:  GET HIT_PATH with the Authorization header
-- HIT_AUTH (when set).  No request() and no response(): wrk builds its one
-- request once and runs no Lua per request, so the client costs as little
-- as it can and every server gets the same client.
local C = dofile((os.getenv("BENCH_LUA_DIR") or "bench/scenarios") .. "/common.lua")
function setup(thread) C.setup(thread) end
function done(summary, latency, requests) C.done(summary, latency) end

wrk.method = "GET"
wrk.path = os.getenv("HIT_PATH") or "/"
local auth = os.getenv("HIT_AUTH")
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end
