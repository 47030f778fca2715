-- Paces wrk to a fixed offered load (plain wrk only knows "as fast as possible"), for bench/console.sh.
--
--   wrk -c N -s bench/console_pace.lua URL -- RATE N
--
-- wrk calls delay() before every request on a connection, the first one included. With N connections each
-- waiting N*1000/RATE ms on average, the offered load is RATE requests/s, a little less in fact: the wait
-- comes on top of the response time. That is why console.sh prints the rate wrk achieved next to the p99.

local threads = 0
local mean_ms

-- Runs in wrk's main Lua state, once per thread: numbers each thread, so their random streams differ.
function setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end

function init(args)
  local rate, conns = tonumber(args[1]), tonumber(args[2])
  if not rate or not conns or rate <= 0 or conns <= 0 then
    error("usage: wrk -c N -s console_pace.lua URL -- RATE N")
  end
  mean_ms = conns * 1000 / rate
  math.randomseed(os.time() * 97 + thread_no)
end

-- Uniform in [0.5, 1.5] x the mean: the same average, but the connections drift apart. A constant wait
-- would keep all N in lockstep and turn a steady 200/s into a burst of N requests every N*5 ms.
function delay()
  return math.floor(mean_ms * (0.5 + math.random()) + 0.5)
end
