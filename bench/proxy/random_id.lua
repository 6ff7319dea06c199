-- bench/proxy/random_id.lua: GET PATH<id> with a random id of tenant 1, or
-- with a 4th argument "post", POST PATH with {"id": <id>}.
-- wrk ... -s random_id.lua URL -- PATH TENANTS ROWS [post]
-- Tenant of id i is 1 + i % TENANTS, so tenant 1 owns the multiples of
-- TENANTS; every request is a hit in the table (no empty answers).
local path, tenants, rows, post
function init(args)
	path = args[1]
	tenants = tonumber(args[2])
	rows = tonumber(args[3])
	post = args[4] == "post"
	math.randomseed(20261125)
end
function request()
	local k = math.random(1, math.floor(rows / tenants))
	if post then
		-- a headers table replaces wrk.headers (-H): keep them
		local h = {["Content-Type"] = "application/json"}
		for name, value in pairs(wrk.headers) do h[name] = value end
		return wrk.format("POST", path, h, '{"id": ' .. (k * tenants) .. '}')
	end
	return wrk.format(nil, path .. (k * tenants))
end
