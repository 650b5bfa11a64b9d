-- Mecha state.redis: every write (set, delete, bulk, transaction) in one atomic step.
--
-- A key is a hash {data, version, expiry}. `expiry` is '<version>:<unix ms>' ('<version>:0'
-- without a TTL), on Redis's clock, so a read learns the expiry without asking PTTL; naming
-- the version lets a reader tell a field left behind by another writer (Dapr sets only data
-- and version). Versions come from one counter (KEYS[1]) shared by all
-- keys, so a key that is deleted and created again never gets a version it had before and an
-- old ETag can never match a new value.
--
-- KEYS[1]   the version counter; KEYS[1 + i] the key of operation i.
-- ARGV[1]   'each': every operation on its own (single and bulk writes), or
--           'all':  check every operation first, then apply all or none (transactions).
-- Then five arguments per operation:
--   kind    'set' or 'del'
--   etag    '' for none, else a canonical decimal version
--   fw      '1' for first-write (create-only when there is no etag)
--   ttl     milliseconds to live; '-1' (or anything <= 0) persists
--   data    the value ('' for deletes)
--
-- Result codes: > 0 the new version of a set, 0 a delete done, -1 stale etag, -2 etag on a
-- missing key, -3 first-write on an existing key, or an error string (for example WRONGTYPE).
-- 'each' replies with one result per operation; 'all' replies {0} when everything was
-- applied, or {i, result} for the first operation that failed (nothing is written then).

local STALE, MISSING, EXISTS = -1, -2, -3
-- Redis before 5 replicates scripts by their body and refuses a write after TIME unless the
-- script replicates its effects instead (the default since Redis 5).
if redis.replicate_commands then redis.replicate_commands() end
local mode = ARGV[1]
local n = #KEYS - 1
local staged = {}

local function current(key)
  local s = staged[key]
  if s then return s end
  local v = redis.pcall('HGET', key, 'version')
  if type(v) == 'table' and v.err then return nil, v.err end
  local exists = (v ~= false) or (redis.call('EXISTS', key) == 1)
  return { exists = exists, version = v }
end

local function check(key, kind, etag, fw)
  if kind == 'del' and etag == '' then return 0 end
  local cur, err = current(key)
  if not cur then return err end
  if etag ~= '' then
    if not cur.exists then return MISSING end
    if cur.version ~= etag then return STALE end
  elseif fw == '1' and cur.exists then
    return EXISTS
  end
  return 0
end

local now_ms

-- When a value written now with `ttl` milliseconds to live expires ('0': never).
local function expires_at(ttl)
  if ttl <= 0 then return '0' end
  if not now_ms then
    local t = redis.call('TIME')
    now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return string.format('%d', now_ms + ttl)
end

local function apply(key, kind, ttl, data)
  if kind == 'del' then
    redis.call('DEL', key)
    return 0
  end
  local v = redis.call('INCR', KEYS[1])
  local old = tonumber(redis.call('HGET', key, 'version'))
  if old and v <= old then
    -- A key written before this counter existed (for example by Dapr) keeps rising.
    v = old + 1
    redis.call('SET', KEYS[1], string.format('%d', v))
  end
  local version = string.format('%d', v)
  redis.call('HSET', key, 'data', data, 'version', version, 'expiry', version .. ':' .. expires_at(ttl))
  if ttl > 0 then
    redis.call('PEXPIRE', key, ttl)
  else
    redis.call('PERSIST', key)
  end
  return v
end

local function arg(i, j)
  return ARGV[2 + (i - 1) * 5 + j]
end

if mode == 'each' then
  local out = {}
  for i = 1, n do
    local key, kind = KEYS[i + 1], arg(i, 0)
    local r = check(key, kind, arg(i, 1), arg(i, 2))
    if r == 0 then
      r = apply(key, kind, tonumber(arg(i, 3)), arg(i, 4))
    end
    out[i] = r
  end
  return out
end

if mode == 'all' then
  for i = 1, n do
    local key, kind = KEYS[i + 1], arg(i, 0)
    local r = check(key, kind, arg(i, 1), arg(i, 2))
    if r ~= 0 then return { i, r } end
    if kind == 'del' then
      staged[key] = { exists = false, version = false }
    else
      -- The new version is not known before it is applied, so no etag can match it.
      staged[key] = { exists = true, version = '' }
    end
  end
  for i = 1, n do
    apply(KEYS[i + 1], arg(i, 0), tonumber(arg(i, 3)), arg(i, 4))
  end
  return { 0 }
end

return redis.error_reply('mecha: unknown write mode ' .. tostring(mode))
