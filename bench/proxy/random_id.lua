-- bench/proxy/random_id.lua: GET PATH<id> with a random id of tenant 1.
-- wrk ... -s random_id.lua URL -- PATH TENANTS ROWS
-- Tenant of id i is 1 + i % TENANTS, so tenant 1 owns the multiples of
-- TENANTS; every request is a hit in the table (no empty answers).
local path, tenants, rows
function init(args)
	path = args[1]
	tenants = tonumber(args[2])
	rows = tonumber(args[3])
	math.randomseed(20261125)
end
function request()
	local k = math.random(1, math.floor(rows / tenants))
	return wrk.format(nil, path .. (k * tenants))
end
