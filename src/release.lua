-- Releases one execution's capacity on one agent, atomically.
-- KEYS[1] agent:slots:{agent}        ZSET of slots; the member is the execution id
-- KEYS[2] agent:slot:{agent}:{id}    HASH of that slot's metadata
-- KEYS[3] agent:running:{agent}      queue lock: JSON whose "id" names its holder
-- ARGV[1] the execution id
-- Returns {slot_removed, lock_removed} (0 or 1 each). The lock is deleted only when its JSON id is
-- this execution, so a lock another execution took in the meantime survives. drain- sentinels are
-- internal to Trinity and never touched.
local id = ARGV[1]
if string.sub(id, 1, 6) == 'drain-' then
  return redis.error_reply('refusing to release a drain- sentinel')
end
local slot_removed = redis.call('ZREM', KEYS[1], id)
redis.call('DEL', KEYS[2])
local lock_removed = 0
local lock = redis.call('GET', KEYS[3])
if lock then
  local ok, holder = pcall(cjson.decode, lock)
  if ok and type(holder) == 'table' and holder['id'] == id then
    redis.call('DEL', KEYS[3])
    lock_removed = 1
  end
end
return {slot_removed, lock_removed}
