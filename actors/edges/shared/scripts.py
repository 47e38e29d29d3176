"""The Lua scripts behind every shared write, and the keys they touch.

Each script runs atomically on the Redis server (no other command runs
between its steps), so a check and the write it guards are one step for
the whole cluster. Keys, under the configured prefix ``P``::

    P:rec:<key>     hash    one provider's (``litellm``) or deployment's (``litellm/groq-70b``)
                            record: state, until, reason, origin, instance, at, version, set_at
    P:recs          set     the record keys that exist (what ``records()`` reads)
    P:version       string  the cluster's change counter: every change takes the next value
    P:fail:<key>    zset    failures in the window, scored by the Redis server's clock (ms)
    P:probe:<key>   string  the instance that holds the half-open probe (expires: PX)
    P:spend:<key>   hash    requests and tokens spent in the current window (expires: PX)
    P:use:<key>:<m> hash    requests (``r:<instance>``) and estimated tokens (``t:<instance>``) each
                            instance sent to deployment ``key`` in wall-clock minute ``m`` (epoch
                            seconds // 60; expires after two minutes): the shared rpm / tpm count
    P:changes       channel the change messages (JSON, :mod:`.messages`)

Numbers travel as the text the caller wrote (``repr(float)``) and are stored
as that text: a script only compares them, so no precision is lost in Lua's
doubles, and a reply carries them back as text (Redis would truncate a Lua
number to an integer). ``records()`` builds key names inside the script,
which a Redis Cluster refuses: this is for one Redis server (or a replica
set behind a proxy), not a cluster.
"""

from __future__ import annotations

__all__ = ("COUNT_FAILURE", "EXTEND_COOLDOWN", "READ_RECORDS", "RELEASE_PROBE", "RENEW_PROBE", "SET_STATE",
           "SPEND", "USAGE")

#: KEYS: record, index, counter. ARGV: key, until, state, reason, origin, instance, at, since
#: ("" for none), channel, message head, then the states a cooldown never overrides ("disabled").
#: Writes the record only if ``until`` is later than the stored one (never shortens), the stored
#: state is not one of the kept ones, and no unconditional set came after ``since`` (a restore
#: after the failure wins). Publishes the change when it writes. Returns {until, changed, version}.
EXTEND_COOLDOWN = """
local rec = redis.call('HMGET', KEYS[1], 'until', 'state', 'set_at', 'version')
local stored = rec[1] or '0'
local version = tonumber(rec[4]) or 0
for i = 11, #ARGV do
  if rec[2] == ARGV[i] then return {stored, 0, version} end
end
if ARGV[8] ~= '' and rec[3] and tonumber(ARGV[8]) < tonumber(rec[3]) then
  return {stored, 0, version}
end
if tonumber(ARGV[2]) <= tonumber(stored) then return {stored, 0, version} end
version = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'until', ARGV[2], 'reason', ARGV[4], 'origin', ARGV[5],
           'instance', ARGV[6], 'at', ARGV[7], 'version', version)
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[9], ARGV[10] .. ',"version":' .. version .. '}')
return {ARGV[2], 1, version}
"""

#: KEYS: record, index, counter, and (a restore) the failure key. ARGV: key, until, state, reason,
#: origin, instance, at, channel, message head. Sets the record whatever it held (and clears the
#: failures when given their key), bumps the version, publishes. Returns the version.
SET_STATE = """
local version = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'until', ARGV[2], 'reason', ARGV[4], 'origin', ARGV[5],
           'instance', ARGV[6], 'at', ARGV[7], 'version', version, 'set_at', ARGV[7])
redis.call('SADD', KEYS[2], ARGV[1])
if KEYS[4] then redis.call('DEL', KEYS[4]) end
redis.call('PUBLISH', ARGV[8], ARGV[9] .. ',"version":' .. version .. '}')
return version
"""

#: KEYS: index. ARGV: the record key prefix (``P:rec:``). One consistent read of every record:
#: returns {key1, {field, value, ...}, key2, {...}, ...}.
READ_RECORDS = """
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local fields = redis.call('HGETALL', ARGV[1] .. name)
  if #fields > 0 then
    out[#out + 1] = name
    out[#out + 1] = fields
  end
end
return out
"""

#: KEYS: the failure set. ARGV: window (ms), this failure's id. Adds the failure at the server's
#: time (one clock for the cluster), drops those older than the window, and returns how many are
#: left: each id counts once however often it is sent.
COUNT_FAILURE = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('PEXPIRE', KEYS[1], window)
return redis.call('ZCARD', KEYS[1])
"""

#: KEYS: the probe lock. ARGV: owner, ttl (ms). Extends the lock only while ``owner`` holds it.
RENEW_PROBE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

#: KEYS: the probe lock. ARGV: owner. Deletes the lock only while ``owner`` holds it: an owner
#: whose lock expired and was taken by another instance can't release the new owner's.
RELEASE_PROBE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

#: KEYS: the budget. ARGV: requests, tokens, window (ms), request limit, token limit (<= 0: none).
#: Spends both only if neither limit would be passed (all or nothing); the window starts with its
#: first spend. Returns {allowed, requests used, tokens used, ms until the window starts over}.
SPEND = """
local used = redis.call('HMGET', KEYS[1], 'requests', 'tokens')
local requests, tokens = tonumber(used[1]) or 0, tonumber(used[2]) or 0
local want_r, want_t = tonumber(ARGV[1]), tonumber(ARGV[2])
local limit_r, limit_t = tonumber(ARGV[4]), tonumber(ARGV[5])
local ttl = redis.call('PTTL', KEYS[1])
local allowed = (limit_r <= 0 or requests + want_r <= limit_r)
  and (limit_t <= 0 or tokens + want_t <= limit_t)
if allowed then
  requests = redis.call('HINCRBY', KEYS[1], 'requests', want_r)
  tokens = redis.call('HINCRBY', KEYS[1], 'tokens', want_t)
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    ttl = tonumber(ARGV[3])
  end
end
if ttl < 0 then ttl = 0 end
return {allowed and 1 or 0, requests, tokens, ttl}
"""

#: KEYS: per deployment, this minute's and the previous minute's usage hash. ARGV: instance, ttl (ms),
#: then per deployment the requests and tokens this instance sent since its last call. Adds them to
#: this minute's hash (its own fields), and returns both hashes of each deployment:
#: {{field, value, ...}, {field, value, ...}, ...}, two per deployment, in KEYS order.
USAGE = """
local out = {}
for i = 1, #KEYS / 2 do
  local cur = KEYS[2 * i - 1]
  local r, t = tonumber(ARGV[2 * i + 1]), tonumber(ARGV[2 * i + 2])
  if r > 0 or t > 0 then
    redis.call('HINCRBY', cur, 'r:' .. ARGV[1], r)
    redis.call('HINCRBY', cur, 't:' .. ARGV[1], t)
    redis.call('PEXPIRE', cur, ARGV[2])
  end
  out[#out + 1] = redis.call('HGETALL', cur)
  out[#out + 1] = redis.call('HGETALL', KEYS[2 * i])
end
return out
"""
