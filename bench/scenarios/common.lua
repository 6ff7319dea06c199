-- bench/scenarios/common.lua: what every wrk script of the suite shares,
-- loaded with dofile by each of them (per wrk thread: init runs in every
-- thread's own Lua state).
--
-- Environment (set by bench/run.sh):
--   BENCH_SAMPLES  "id<TAB>tenant" lines drawn uniformly from bench.events,
--                  hence Zipf-skewed over tenants (bench/data/load.sh)
--   BENCH_TOKENS   "tenant<TAB>jwt" lines (bench/data/tokens.py)
--   BENCH_TENANT   when set, only this tenant's samples are used
--   BENCH_HOT      when set, only the first BENCH_HOT of those samples (a
--                  small hot set: every row is read and written often)
--   BENCH_SEED     seed of the thread's random numbers (default 1), mixed
--                  with the thread number so threads differ
--   BENCH_LOG      when set, each thread writes the operations that the
--                  staleness check needs to BENCH_LOG.<thread>.tsv
--                  (M.log_read, M.log_write; bench/staleness.py)
local M = {}

-- A clock shared by every process of the machine (CLOCK_MONOTONIC, in
-- microseconds), through LuaJIT's FFI: wrk's Lua has no finer clock than
-- os.time().  nil when the FFI is not there (then nothing is logged).
local ffi_ok, ffi = pcall(require, "ffi")
if ffi_ok then
	pcall(ffi.cdef, "typedef struct { long tv_sec; long tv_nsec; } bench_timespec_t;" ..
		"int clock_gettime(int clk, bench_timespec_t *tp);")
	local ts = ffi.new("bench_timespec_t")
	function M.now_us()
		ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
		return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
	end
end

M.kinds = { "view", "click", "signup", "purchase", "refund" }

local function lines(path)
	local f = assert(io.open(path, "r"), "cannot open " .. tostring(path))
	local out = {}
	for l in f:lines() do
		local a, b = l:match("^(%S+)\t(%S+)")
		if a then out[#out + 1] = { a, b } end
	end
	f:close()
	return out
end

-- Loads samples and tokens into M.samples ({id, tenant}) and M.tokens.
function M.load(thread_no)
	local only = os.getenv("BENCH_TENANT")
	M.samples = {}
	local hot = tonumber(os.getenv("BENCH_HOT") or "")
	for _, p in ipairs(lines(os.getenv("BENCH_SAMPLES"))) do
		if (not only or only == "" or p[2] == only) and (not hot or #M.samples < hot) then
			M.samples[#M.samples + 1] = p
		end
	end
	assert(#M.samples > 0, "no samples")
	M.tokens = {}
	for _, p in ipairs(lines(os.getenv("BENCH_TOKENS"))) do
		M.tokens[p[1]] = "Bearer " .. p[2]
	end
	math.randomseed(tonumber(os.getenv("BENCH_SEED") or "1") * 7919 + (thread_no or 0))
	local log = os.getenv("BENCH_LOG")
	if log and log ~= "" and M.now_us then
		M.log = assert(io.open(log .. "." .. (thread_no or 0) .. ".tsv", "w"))
		M.log:setvbuf("full", 65536) -- flushed by exit(): wrk returns from main
	end
end

-- The operation log of the staleness check, one line per operation:
--   R <id> <version seen> <start, us>   a read by id, sent at start
--   W <id> <version> <ack, us>          an update whose answer (sent by the
--                                       server after its COMMIT) arrived at ack
function M.log_read(id, version, start)
	M.log:write("R\t", id, "\t", version, "\t", string.format("%d", start), "\n")
end

function M.log_write(id, version, ack)
	M.log:write("W\t", id, "\t", version, "\t", string.format("%d", ack), "\n")
end

-- A random sample: {id, tenant}.
function M.sample()
	return M.samples[math.random(#M.samples)]
end

function M.headers(tenant, json)
	local h = { ["Authorization"] = M.tokens[tenant] }
	if json then h["Content-Type"] = "application/json" end
	return h
end

-- Counters per thread, summed over threads by M.done.
M.counters = { "reads", "writes", "updates", "searches", "ok", "bad", "hits" }
M.c = {}
for _, k in ipairs(M.counters) do M.c[k] = 0 end

function M.count(status, headers)
	if status >= 200 and status < 300 then M.c.ok = M.c.ok + 1 else M.c.bad = M.c.bad + 1 end
	local xc = headers["X-Cache"] or headers["x-cache"]
	if xc == "hit" or xc == "stale" then M.c.hits = M.c.hits + 1 end
end

-- setup/done helpers: keep the thread objects, then print one
-- machine-readable line that bench/run.sh parses:
--   RESULT requests=N secs=S rps=R p50=ms p90=ms p95=ms p99=ms max=ms
--          errors=E reads=... writes=... searches=... ok=... bad=... hits=...
M.threads = {}
local thread_no = 0
function M.setup(thread)
	thread_no = thread_no + 1
	thread:set("thread_no", thread_no)
	M.threads[#M.threads + 1] = thread
end

function M.done(summary, latency)
	local sum = {}
	for _, k in ipairs(M.counters) do sum[k] = 0 end
	for _, t in ipairs(M.threads) do
		for _, k in ipairs(M.counters) do sum[k] = sum[k] + (t:get("c_" .. k) or 0) end
	end
	local e = summary.errors
	local secs = summary.duration / 1e6
	local out = string.format("RESULT requests=%d secs=%.2f rps=%.1f p50=%.3f p90=%.3f p95=%.3f p99=%.3f max=%.3f errors=%d",
		summary.requests, secs, summary.requests / secs,
		latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(95) / 1000,
		latency:percentile(99) / 1000, latency.max / 1000,
		e.connect + e.read + e.write + e.timeout + e.status)
	for _, k in ipairs(M.counters) do out = out .. string.format(" %s=%d", k, sum[k]) end
	io.write(out .. "\n")
end

-- Publishes the thread's counters for M.done; call from response().  Only
-- every 16th call copies them, so the last few responses of a thread may
-- be missing from the counts (not from wrk's own request count).
local calls = 0
function M.publish()
	calls = calls + 1
	if calls % 16 == 1 then
		for _, k in ipairs(M.counters) do wrk.thread:set("c_" .. k, M.c[k]) end
	end
end

return M
