-- bench/scenarios/mix.lua: the read-heavy mix of scenario 1 (and of the
-- soak), for wrk:  wrk -s bench/scenarios/mix.lua URL
--
-- Every request acts for the tenant of a random sample row (so tenants are
-- Zipf-skewed): MIX = "reads:writes:searches" percentages (default
-- 60:30:10).  A read fetches the sample's event by id; a write updates the
-- sample's event (UPDATES percent of the writes, default 50: a new amount,
-- version + 1) or adds an event; a search asks for a page of the tenant's
-- events of a random kind and, half of the time, follows the next_cursor
-- of this connection's previous search page instead (SEARCH_FOLLOW,
-- default 0.5).  READ picks what a read is: "event" (default, by id), or
-- "tenant_stats" / "tenant_stats_live" (the aggregate, precomputed or on
-- demand).  So MIX=100:0:0 is a read-only load and MIX=0:100:0 a
-- write-only one.  Environment of common.lua.
--
-- With BENCH_LOG, reads by id and updates are logged for the staleness
-- check (common.lua): a read's start is taken in request(), just before
-- wrk sends it, and its answer is matched by the id in the body.  wrk does
-- not say which connection an answer came on, so a thread never has two
-- reads of the same id in flight: request() draws another sample instead.
local C = dofile((os.getenv("BENCH_LUA_DIR") or "bench/scenarios") .. "/common.lua")
function setup(thread) C.setup(thread) end
function done(summary, latency, requests) C.done(summary, latency) end

local reads, writes, updates, follow, read_ep
-- reads by id in flight on this thread: id -> start (us)
local inflight = {}
-- The last search page's tenant, kind and next_cursor, taken from the
-- response itself: wrk interleaves the connections of a thread, so the
-- request a response answers is not known.
local cursor_t, cursor_k, cursor

function init(args)
	C.load(thread_no)
	local r, w = (os.getenv("MIX") or "60:30:10"):match("^(%d+):(%d+):(%d+)$")
	reads, writes = tonumber(r or 60), tonumber(w or 30)
	updates = tonumber(os.getenv("UPDATES") or "50")
	follow = tonumber(os.getenv("SEARCH_FOLLOW") or "0.5")
	read_ep = os.getenv("READ") or "event"
end

local function urlenc(s)
	return (s:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

-- A sample whose id has no read in flight on this thread (a few draws).
local function read_sample(now)
	local s
	for _ = 1, 16 do
		s = C.sample()
		local t = inflight[s[1]]
		-- an answer that never came (an error) frees its id after 10 s
		if not t or now - t > 10000000 then return s end
	end
	return s
end

function request()
	local x = math.random(100)
	local s = C.sample()
	if x <= reads then
		C.c.reads = C.c.reads + 1
		if read_ep ~= "event" then
			return wrk.format("GET", "/rpc/" .. read_ep, C.headers(s[2]))
		end
		if C.log then
			local now = C.now_us()
			s = read_sample(now)
			inflight[s[1]] = now
		end
		return wrk.format("GET", "/rpc/event?id=" .. s[1], C.headers(s[2]))
	elseif x <= reads + writes then
		C.c.writes = C.c.writes + 1
		if math.random(100) <= updates then
			C.c.updates = C.c.updates + 1
			local body = string.format('{"id":%s,"amount":%d.%02d}', s[1], math.random(0, 499), math.random(0, 99))
			return wrk.format("POST", "/rpc/update_event", C.headers(s[2], true), body)
		end
		local body = string.format('{"kind":"%s","amount":%d.%02d,"note":"bench write"}',
			C.kinds[math.random(#C.kinds)], math.random(0, 499), math.random(0, 99))
		return wrk.format("POST", "/rpc/add_event", C.headers(s[2], true), body)
	else
		C.c.searches = C.c.searches + 1
		if cursor and math.random() < follow then
			return wrk.format("GET", "/rpc/search_events?kind=" .. cursor_k .. "&page_size=20&cursor=" .. urlenc(cursor),
				C.headers(cursor_t))
		end
		return wrk.format("GET", "/rpc/search_events?kind=" .. C.kinds[math.random(#C.kinds)] .. "&page_size=20",
			C.headers(s[2]))
	end
end

-- The staleness log: a read by id has "tenant_id" and "version" (api.event),
-- an update only "id" and "version" (api.update_event).
local function log_op(status, body)
	if status ~= 200 then return end
	local v = body:match('"version"%s*:%s*(%d+)')
	if not v then return end
	local id = body:match('"id"%s*:%s*(%d+)')
	if not id then return end
	if body:find('"tenant_id"', 1, true) then
		local start = inflight[id]
		if start then
			inflight[id] = nil
			C.log_read(id, v, start)
		end
	else
		C.log_write(id, v, C.now_us())
	end
end

function response(status, headers, body)
	C.count(status, headers)
	if C.log then log_op(status, body) end
	local nc = status == 200 and body:match('"next_cursor"%s*:%s*"([^"]+)"')
	if nc then
		local t, k = body:match('"tenant_id"%s*:%s*(%d+)'), body:match('"kind"%s*:%s*"(%a+)"')
		if t and k then cursor_t, cursor_k, cursor = t, k, nc end
	end
	C.publish()
end
