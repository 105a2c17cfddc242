-- Publishes one recovery event to Trinity's event stream, in the same round trip as the release.
-- KEYS[1] trinity:events
-- ARGV[1] 'on' (publish always; the stream is created if need be) or 'auto' (only to an existing
--         stream); ARGV[2] the payload JSON; ARGV[3] the agent's name; ARGV[4] MAXLEN (approximate)
-- Returns 1 if published, 0 if auto found no stream. A key of another type fails with WRONGTYPE.
if ARGV[1] ~= 'on' and redis.call('TYPE', KEYS[1]).ok ~= 'stream' then
  return 0
end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*',
  'payload', ARGV[2], 'scope', 'all', 'agent_name', ARGV[3])
return 1
