-- Takes the apply lock over from a holder known to be dead, only if that holder still has it.
-- KEYS[1] the lock key; ARGV[1] the dead holder's token; ARGV[2] this run's token;
-- ARGV[3] the time to live in milliseconds.
-- Returns 1 if taken over, 0 if the lock changed hands (or expired) in the meantime.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
