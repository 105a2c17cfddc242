-- Extends the apply lock only if this run still holds it.
-- KEYS[1] the lock key; ARGV[1] this run's token; ARGV[2] the new time to live in milliseconds.
-- Returns 1 if extended, 0 if the lock is gone or held by another run.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
