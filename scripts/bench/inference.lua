-- wrk script for paid inference: each wrk thread owns one connection and one payment
-- channel, and sends that channel's pre-signed request bodies in order (vouchers are
-- cumulative, so one channel's queries must arrive in sequence). Run wrk with -t N -c N.
-- VOUCHER_DIR holds vouchers-<i>.txt, one JSON body per line (presign_vouchers example).

local threads = {}
local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("id", counter)
    table.insert(threads, thread)
end

function init(args)
    local dir = os.getenv("VOUCHER_DIR")
    bodies = {}
    for line in io.lines(dir .. "/vouchers-" .. id .. ".txt") do
        bodies[#bodies + 1] = line
    end
    next_body = 1
    failed = 0
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
end

function request()
    if next_body > #bodies then
        -- Out of vouchers: stop this thread rather than replay (a replay would be refused).
        wrk.thread:stop()
        next_body = #bodies
    end
    local body = bodies[next_body]
    next_body = next_body + 1
    return wrk.format("POST", "/inference", nil, body)
end

function response(status, headers, body)
    if status ~= 200 then
        failed = failed + 1
        if failed <= 3 then
            io.stderr:write("status " .. status .. ": " .. body .. "\n")
        end
    end
end

function done(summary, latency, requests)
    local failures = 0
    for _, t in ipairs(threads) do
        failures = failures + t:get("failed")
    end
    io.write(string.format("non-200 answers: %d\n", failures))
end
