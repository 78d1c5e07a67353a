"""The Lua scripts of the money side: each state change is ONE atomic script on one cluster slot.

* ``LEASE``  — lease / renew / settle / return in one call (see :mod:`dsp.budget.leases`).
  Reclaims other processes' expired leases first, so a crashed process's money comes back after
  its TTL without any sweeper. Times come from Redis ``TIME`` so hosts' clocks do not matter.
  With a plan rate it also advances the day's plan guard (``plan``, ``plan_ms``, ``allow``) and
  grants only within it; it keeps the campaign's pacing state (λ, throttle, value floor) in
  ``dsp:bp:{c}`` for restarts, new workers and the next day.
* ``NOTICE`` — one win/bill/loss notice: dedup on the kinds already seen for the bid, the bid's
  outcome, and (when that kind commits for the exchange) ``spent += price`` on the day and
  lifetime hashes. One field per bid, ``<kinds seen><outcome>`` (:mod:`dsp.budget.outcomes`);
  the outcome hash's TTL only ever grows, to what this bid's token still needs (ARGV[5]).
* ``CAP_HIT`` — append one impression timestamp to a user's frequency-cap field, trimmed.

Redis ledger invariant (per campaign day): ``out`` = Σ live ``lease:*``; new money is leased only
while ``budget - out - spent > 0``. A commit adds to ``spent`` while the bidding process's lease
still holds the reservation (counted twice, conservatively) until that process settles it.
"""

from __future__ import annotations

LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
local lf, xf, rf = 'lease:' .. id, 'lexp:' .. id, 'resv:' .. id
if tonumber(ARGV[2]) >= 0 and redis.call('HGET', KEYS[1], 'pinned') ~= '1' then
  redis.call('HSET', KEYS[1], 'budget', ARGV[2])
end
local tb = tonumber(ARGV[3])
if tb >= 0 and redis.call('HGET', KEYS[2], 'pinned') ~= '1' then
  redis.call('HSET', KEYS[2], 'budget', ARGV[3])
end
local flat = redis.call('HGETALL', KEYS[1])
local reclaimed = 0
local live = 1
local held = tonumber(ARGV[16])
for i = 1, #flat, 2 do
  local f = flat[i]
  if string.sub(f, 1, 5) == 'lexp:' then
    local lid = string.sub(f, 6)
    if tonumber(flat[i + 1]) < now then
      local amt = tonumber(redis.call('HGET', KEYS[1], 'lease:' .. lid) or '0')
      redis.call('HDEL', KEYS[1], 'lease:' .. lid, f, 'resv:' .. lid)
      reclaimed = reclaimed + amt
    elseif f ~= xf then
      live = live + 1
      held = held + tonumber(redis.call('HGET', KEYS[1], 'resv:' .. lid) or '0')
    end
  end
end
if reclaimed > 0 then
  redis.call('HINCRBY', KEYS[1], 'out', -reclaimed)
  redis.call('HINCRBY', KEYS[2], 'out', -reclaimed)
end
local mine = tonumber(redis.call('HGET', KEYS[1], lf) or '0')
local lost = 0
if mine == 0 and ARGV[9] == '1' then lost = 1 end
local settle, ret = 0, 0
if lost == 0 then
  settle = math.min(tonumber(ARGV[4]), mine)
  mine = mine - settle
  ret = math.min(tonumber(ARGV[5]), mine)
  mine = mine - ret
end
local budget = tonumber(redis.call('HGET', KEYS[1], 'budget') or '0')
local out = tonumber(redis.call('HGET', KEYS[1], 'out') or '0') - settle - ret
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local tout = tonumber(redis.call('HGET', KEYS[2], 'out') or '0') - settle - ret
local tspent = tonumber(redis.call('HGET', KEYS[2], 'spent') or '0')
local free = budget - out - spent
if tb >= 0 then
  local tbudget = tonumber(redis.call('HGET', KEYS[2], 'budget') or '0')
  free = math.min(free, tbudget - tout - tspent)
end
local want = tonumber(ARGV[6])
local cap = tonumber(ARGV[7]) - mine
local rate = tonumber(ARGV[11])
local plan, limited, fair = -1, 0, -1
if rate >= 0 then
  local allow = tonumber(ARGV[12])
  local p = tonumber(redis.call('HGET', KEYS[1], 'plan') or '')
  local pms = tonumber(redis.call('HGET', KEYS[1], 'plan_ms') or '') or now
  if p == nil then
    p = 0
    local prev = redis.call('HGETALL', KEYS[4])
    local pv, pheld = {}, 0
    for i = 1, #prev, 2 do
      if string.sub(prev[i], 1, 5) == 'resv:' then
        pheld = pheld + tonumber(prev[i + 1])
      else
        pv[prev[i]] = prev[i + 1]
      end
    end
    if pv['plan'] then
      local room = tonumber(pv['plan']) + tonumber(pv['allow'] or '0')
                   - tonumber(pv['spent'] or '0') - pheld
      p = math.min(0, room - allow)
    end
  end
  p = math.min(p + rate * math.max(0, now - pms) / 1000, spent + held)
  local room = p + allow - spent - out
  local pool = math.min(p + allow - spent, allow + rate * tonumber(ARGV[15]))
  local share = math.max(pool / live, tonumber(ARGV[13]))
  local g = math.floor(math.min(room, share - mine))
  if g < math.min(want, free, cap) then limited = 1 end
  cap = math.min(cap, g)
  redis.call('HSET', KEYS[1], 'plan', p, 'plan_ms', now, 'allow', allow)
  plan = math.floor(p)
  fair = math.floor(share)
end
local grant = math.min(want, free, cap)
if grant < 0 then grant = 0 end
mine = mine + grant
out = out + grant
tout = tout + grant
redis.call('HSET', KEYS[1], 'out', out)
redis.call('HSET', KEYS[2], 'out', tout)
if mine > 0 or (rate >= 0 and lost == 0) then
  redis.call('HSET', KEYS[1], lf, mine, xf, now + tonumber(ARGV[8]), rf, ARGV[16])
else
  redis.call('HDEL', KEYS[1], lf, xf, rf)
end
redis.call('EXPIRE', KEYS[1], ARGV[10])
local state = redis.call('GET', KEYS[3]) or ''
if ARGV[14] ~= '' then redis.call('SET', KEYS[3], ARGV[14], 'EX', ARGV[10]) end
return {mine, grant, spent, budget, out, lost, reclaimed, tspent, settle, ret, plan, live, limited,
        fair, state}
"""

NOTICE = """
local bid, kind = ARGV[1], ARGV[2]
local bit = 1
if kind == 'b' then bit = 2 elseif kind == 'l' then bit = 4 end
local cur = redis.call('HGET', KEYS[3], bid)
local seen, state = 0, false
if cur then
  seen = tonumber(string.sub(cur, 1, 1)) or 0
  if #cur > 1 then state = string.sub(cur, 2) end
end
if math.floor(seen / bit) % 2 == 1 then return {'duplicate', 0} end
seen = seen + bit
local function put(s)
  redis.call('HSET', KEYS[3], bid, seen .. (s or ''))
  if redis.call('TTL', KEYS[3]) < tonumber(ARGV[5]) then redis.call('EXPIRE', KEYS[3], ARGV[5]) end
end
local price = tonumber(ARGV[3])
if kind == 'l' then
  if not state then
    put('L')
    return {'ok', 0}
  end
  put(state)
  return {'late', 0}
end
local result = 'ok'
if state == 'L' then
  result = 'out_of_order'
elseif kind == 'b' and not state then
  result = 'early'
end
if ARGV[4] == '1' then
  if state and string.sub(state, 1, 1) == 'C' then
    put(state)
    return {'duplicate', 0}
  end
  put('C' .. ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'spent', price)
  redis.call('HINCRBY', KEYS[2], 'spent', price)
  redis.call('EXPIRE', KEYS[1], ARGV[6])
  return {result, price}
end
if kind == 'w' then
  if not state or state == 'L' then state = 'W' end
  put(state)
  return {result, 0}
end
put(state)
return {'ignored', 0}
"""

CAP_HIT = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local now = tonumber(ARGV[2])
local cutoff = now - tonumber(ARGV[3])
local kept = {}
if cur then
  for ts in string.gmatch(cur, '%d+') do
    if tonumber(ts) > cutoff then kept[#kept + 1] = ts end
  end
end
kept[#kept + 1] = ARGV[2]
local start = math.max(1, #kept - tonumber(ARGV[4]) + 1)
redis.call('HSET', KEYS[1], ARGV[1], table.concat(kept, ',', start))
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[5]) then redis.call('EXPIRE', KEYS[1], ARGV[5]) end
return #kept - start + 1
"""
