-- Mecha state.redis: read one or more keys in one step.
-- KEYS: the (prefixed) keys. Reply: one entry per key, in order:
--   {0}                          the key is missing (or expired)
--   {1, data, version, pttl}     found; version is nil for a hash Mecha did not write,
--                                pttl is -1 when the key has no expiry
--   {-1, message}                the key cannot be read (for example it is not a hash)
local out = {}
for i, key in ipairs(KEYS) do
  local r = redis.pcall('HMGET', key, 'data', 'version')
  if type(r) == 'table' and r.err then
    out[i] = {-1, r.err}
  elseif not r[1] then
    out[i] = {0}
  else
    out[i] = {1, r[1], r[2], redis.call('PTTL', key)}
  end
end
return out
