-- bench/run.sh case (d): every request asks for a URL nobody asked for before, so each one is a miss
-- at the edge and at the regional and goes to the origin. Use with one connection (-t1 -c1): the
-- requests are sequential and wrk's latency is the cold-miss latency.
--   wrk -t1 -c1 -d5s --latency -s cold.lua URL -- TAG SIZE
-- TAG makes the URLs of this run differ from every other run's.
local tag, size, n = "cold", 1024, 0

function init(args)
    tag = args[1] or tag
    size = tonumber(args[2]) or size
end

function request()
    n = n + 1
    return wrk.format("GET", "/bytes/" .. size .. "?hdr=Cache-Control:max-age%3D3600&cold=" .. tag .. "-" .. n)
end
