-- bench/scenarios/page.lua: deep pagination (scenario 2), for wrk with one
-- connection per thread (-t N -c N: each thread walks its own pages in
-- order).  Every thread pages through the events of BENCH_TENANT (default
-- 1, the largest tenant), newest first, PAGE_SIZE (20) rows a page: a walk
-- starts at a depth of START_ROWS rows, reads WALK (10) pages following the
-- links, and starts again.
--   MODE=cursor  search_events (pulse.page); the walk starts from
--                START_CURSOR, the next_cursor at START_ROWS rows (empty:
--                page 1), then follows next_cursor
--   MODE=offset  search_events_offset (LIMIT/OFFSET) with start =
--                START_ROWS, START_ROWS + PAGE_SIZE, ...
local C = dofile((os.getenv("BENCH_LUA_DIR") or "bench/scenarios") .. "/common.lua")
function setup(thread) C.setup(thread) end
function done(summary, latency, requests) C.done(summary, latency) end

local mode, walk, size, tenant, start_rows, start_cursor
local page, cursor = 0, nil

function init(args)
	C.load(thread_no)
	mode = os.getenv("MODE") or "cursor"
	walk = tonumber(os.getenv("WALK") or "10")
	size = tonumber(os.getenv("PAGE_SIZE") or "20")
	tenant = os.getenv("BENCH_TENANT") or "1"
	start_rows = tonumber(os.getenv("START_ROWS") or "0")
	start_cursor = os.getenv("START_CURSOR") or ""
	if start_cursor == "" then start_cursor = nil end
	cursor = start_cursor
end

local function urlenc(s)
	return (s:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

function request()
	C.c.searches = C.c.searches + 1
	if mode == "offset" then
		return wrk.format("GET", "/rpc/search_events_offset?page_size=" .. size .. "&start=" .. (start_rows + page * size),
			C.headers(tenant))
	end
	local path = "/rpc/search_events?page_size=" .. size
	if cursor then path = path .. "&cursor=" .. urlenc(cursor) end
	return wrk.format("GET", path, C.headers(tenant))
end

function response(status, headers, body)
	C.count(status, headers)
	page = page + 1
	cursor = status == 200 and body:match('"next_cursor"%s*:%s*"([^"]+)"') or nil
	if page >= walk or (mode == "cursor" and not cursor) then page, cursor = 0, start_cursor end
	C.publish()
end
