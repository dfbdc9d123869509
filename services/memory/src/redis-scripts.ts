import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * Lua scripts that make each operation atomic on Redis: version checks,
 * quota checks and counter updates happen in one step, never as a read
 * followed by a separate write. Times come from Redis's own clock (TIME),
 * so every service instance computes the same expiry.
 */

export interface LuaScript {
  readonly name: string;
  readonly source: string;
  readonly sha1: string;
}

function luaScript(name: string, body: string): LuaScript {
  const source = `${COMMON}\n${body}`;
  return { name, source, sha1: createHash('sha1').update(source).digest('hex') };
}

const COMMON = `
local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- Removes every expired entry of the agent, with its index entry and its
-- share of the quota counters. The number of entries is bounded by the
-- agent's key quota.
local function purge_expired(prefix, meta, expiry, now)
  local ids = redis.call('ZRANGEBYSCORE', expiry, '-inf', now)
  for _, id in ipairs(ids) do
    local value_key = prefix .. 'val:' .. id
    local size = redis.call('HGET', value_key, 'size')
    if size then
      local length, rest = string.match(id, '^(%d+):(.*)$')
      local namespace_length = tonumber(length)
      local namespace = string.sub(rest, 1, namespace_length)
      local key = string.sub(rest, namespace_length + 2)
      redis.call('DEL', value_key)
      redis.call('ZREM', prefix .. 'idx:' .. length .. ':' .. namespace, key)
      redis.call('HINCRBY', meta, 'keys', -1)
      redis.call('HINCRBY', meta, 'bytes', -tonumber(size))
    end
  end
  if #ids > 0 then
    redis.call('ZREMRANGEBYSCORE', expiry, '-inf', now)
  end
end
`;

/**
 * KEYS: meta, expiry, value key, index key.
 * ARGV: value, content type, ttl ms (0 = none), if_version (-1 = none),
 * max keys, max bytes, agent prefix, entry id, key.
 * Returns {'stored', version}, {'version-mismatch', current},
 * {'too-many-keys', keys, max} or {'too-many-bytes', bytes after, max}.
 */
export const PUT_SCRIPT = luaScript(
  'put',
  `
local now = now_ms()
purge_expired(ARGV[7], KEYS[1], KEYS[2], now)

local current = redis.call('HMGET', KEYS[3], 'ver', 'size')
local current_version = tonumber(current[1]) or 0
local if_version = tonumber(ARGV[4])
if if_version >= 0 and if_version ~= current_version then
  return {'version-mismatch', current_version}
end

local size = string.len(ARGV[1])
local usage = redis.call('HMGET', KEYS[1], 'keys', 'bytes')
local keys = tonumber(usage[1]) or 0
local bytes = tonumber(usage[2]) or 0
local max_keys = tonumber(ARGV[5])
local max_bytes = tonumber(ARGV[6])
local added_keys = 0
if current_version == 0 then added_keys = 1 end
local added_bytes = size - (tonumber(current[2]) or 0)
if added_keys > 0 and keys + added_keys > max_keys then
  return {'too-many-keys', keys, max_keys}
end
if added_bytes > 0 and bytes + added_bytes > max_bytes then
  return {'too-many-bytes', bytes + added_bytes, max_bytes}
end

local version = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HINCRBY', KEYS[1], 'keys', added_keys)
redis.call('HINCRBY', KEYS[1], 'bytes', added_bytes)
local ttl = tonumber(ARGV[3])
local expires = 0
if ttl > 0 then expires = now + ttl end
redis.call('HSET', KEYS[3], 'v', ARGV[1], 'ct', ARGV[2], 'ver', version, 'size', size, 'exp', expires)
if expires > 0 then
  redis.call('ZADD', KEYS[2], expires, ARGV[8])
else
  redis.call('ZREM', KEYS[2], ARGV[8])
end
redis.call('ZADD', KEYS[4], 0, ARGV[9])
return {'stored', version}
`,
);

/**
 * KEYS: value key. Returns nil for an absent or expired key, otherwise
 * {value, content type, version, ttl ms or -1}.
 */
export const GET_SCRIPT = luaScript(
  'get',
  `
local now = now_ms()
local entry = redis.call('HMGET', KEYS[1], 'v', 'ct', 'ver', 'exp')
if not entry[3] then return false end
local expires = tonumber(entry[4])
if expires > 0 and expires <= now then return false end
local ttl = -1
if expires > 0 then ttl = expires - now end
return {entry[1], entry[2], tonumber(entry[3]), ttl}
`,
);

/**
 * KEYS: meta, expiry, value key, index key.
 * ARGV: if_version (-1 = none), agent prefix, entry id, key.
 * Returns {'deleted', version, size}, {'absent'} or {'version-mismatch', current}.
 */
export const DELETE_SCRIPT = luaScript(
  'delete',
  `
local now = now_ms()
purge_expired(ARGV[2], KEYS[1], KEYS[2], now)

local current = redis.call('HMGET', KEYS[3], 'ver', 'size')
if not current[1] then return {'absent'} end
local version = tonumber(current[1])
local if_version = tonumber(ARGV[1])
if if_version >= 0 and if_version ~= version then
  return {'version-mismatch', version}
end

redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[4])
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('HINCRBY', KEYS[1], 'keys', -1)
redis.call('HINCRBY', KEYS[1], 'bytes', -tonumber(current[2]))
return {'deleted', version, tonumber(current[2])}
`,
);

/**
 * KEYS: index key. ARGV: value key prefix of the namespace, ZRANGEBYLEX min
 * and max, limit. Returns up to limit live entries in key order, each
 * {key, version, size, content type, ttl ms or -1}, skipping expired ones.
 */
export const LIST_SCRIPT = luaScript(
  'list',
  `
local now = now_ms()
local limit = tonumber(ARGV[4])
local found = {}
local min = ARGV[2]
while #found < limit do
  local keys = redis.call('ZRANGEBYLEX', KEYS[1], min, ARGV[3], 'LIMIT', 0, limit)
  for _, key in ipairs(keys) do
    local entry = redis.call('HMGET', ARGV[1] .. key, 'ver', 'size', 'ct', 'exp')
    local expires = tonumber(entry[4]) or 0
    if entry[1] and (expires == 0 or expires > now) then
      local ttl = -1
      if expires > 0 then ttl = expires - now end
      found[#found + 1] = {key, tonumber(entry[1]), tonumber(entry[2]), entry[3], ttl}
      if #found >= limit then break end
    end
  end
  if #keys < limit then break end
  min = '(' .. keys[#keys]
end
return found
`,
);

/** Commands the scripts call; the per-agent ACL users may run only these and the script commands. */
export const SCRIPT_COMMANDS = [
  'time',
  'hget',
  'hmget',
  'hset',
  'hincrby',
  'del',
  'zadd',
  'zrem',
  'zrangebyscore',
  'zremrangebyscore',
  'zrangebylex',
] as const;

type ScriptArgument = string | Buffer | number;

/**
 * Buffer-replying twins of EVALSHA and EVAL. ioredis 6.1 defines them at
 * run time but does not declare them, and its declared `callBuffer` loses
 * the command name under auto-pipelining.
 */
interface BufferScriptCommands {
  evalshaBuffer(sha1: string, keyCount: number, ...args: ScriptArgument[]): Promise<unknown>;
  evalBuffer(source: string, keyCount: number, ...args: ScriptArgument[]): Promise<unknown>;
}

function isNoScriptError(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}

/**
 * Runs a script by its SHA-1 and sends the source only when Redis does not
 * have it cached, as after a restart. With `buffers`, bulk replies arrive
 * as Buffers so binary values survive.
 */
export async function runScript(
  client: Redis,
  script: LuaScript,
  keys: readonly string[],
  args: readonly ScriptArgument[],
  buffers = false,
): Promise<unknown> {
  const bufferClient = client as unknown as BufferScriptCommands;
  try {
    return buffers
      ? await bufferClient.evalshaBuffer(script.sha1, keys.length, ...keys, ...args)
      : await client.evalsha(script.sha1, keys.length, ...keys, ...args);
  } catch (error) {
    if (!isNoScriptError(error)) {
      throw error;
    }
    return buffers
      ? await bufferClient.evalBuffer(script.source, keys.length, ...keys, ...args)
      : await client.eval(script.source, keys.length, ...keys, ...args);
  }
}
