-- bench/run.sh case (f): URLs drawn from a Zipf distribution over N objects (object k, k = 1..N, is
-- asked for with probability proportional to 1 / k^ALPHA) and counts the edge's cache hits from the
-- response headers each system sets:
--   cdn-node  Cache-Status: cdn-node-edge; hit
--   nginx     X-Cache: HIT                      (add_header X-Cache $upstream_cache_status)
--   ATS       Via: ... [cH...] or [cR...]       (insert_response_via_str 2; the last Via entry is the edge's;
--                                                H = fresh hit, R = fresh RAM-cache hit)
--   wrk -t2 -c50 -d10s --latency -s zipf.lua URL -- N ALPHA SIZE SEED
-- done() prints "zipf: responses R hits H".
local N, alpha, size, seed = 20000, 1.0, 16384, 1
local cdf = {}
hits, resps = 0, 0 -- globals: done() reads them from each thread
local threads = {}

function setup(thread)
    table.insert(threads, thread)
    thread:set("id", #threads)
end

function init(args)
    N = tonumber(args[1]) or N
    alpha = tonumber(args[2]) or alpha
    size = tonumber(args[3]) or size
    seed = tonumber(args[4]) or seed
    math.randomseed(seed * 7919 + (id or 0))
    local s = 0
    for k = 1, N do
        s = s + 1 / k ^ alpha
        cdf[k] = s
    end
    for k = 1, N do
        cdf[k] = cdf[k] / s
    end
end

function request()
    local u = math.random()
    local lo, hi = 1, N
    while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if cdf[mid] < u then lo = mid + 1 else hi = mid end
    end
    return wrk.format("GET", "/bytes/" .. size .. "?hdr=Cache-Control:max-age%3D3600&z=" .. lo)
end

local function is_hit(headers)
    for k, v in pairs(headers) do
        local lk = string.lower(k)
        if lk == "cache-status" then
            if string.find(v, "cdn-node-edge; hit", 1, true) then return true end
        elseif lk == "x-cache" then
            if v == "HIT" then return true end
        elseif lk == "via" then
            local c = string.match(v, ".*%[c(.)")
            if c == "H" or c == "R" then return true end
        end
    end
    return false
end

function response(status, headers, body)
    resps = resps + 1
    if status == 200 and is_hit(headers) then hits = hits + 1 end
end

function done(summary, latency, requests)
    local h, r = 0, 0
    for _, t in ipairs(threads) do
        h = h + t:get("hits")
        r = r + t:get("resps")
    end
    io.write(string.format("zipf: responses %d hits %d\n", r, h))
end
