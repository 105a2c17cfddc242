-- Releases the apply lock only if this run still holds it.
-- KEYS[1] the lock key; ARGV[1] this run's token. Returns 1 if deleted, 0 if held by another run
-- (or expired).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
