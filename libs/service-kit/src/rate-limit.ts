import { randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { durationMsVar, integerVar, stringVar, type ConfigValues } from './config.js';
import { CordonError } from './errors.js';

/** Per-agent run limits of the executor. */
export const runLimitConfigSpec = {
  runsPerMinute: integerVar('CORDON_EXECUTOR_RUNS_PER_MINUTE', {
    description:
      'Runs an agent may start per minute (token bucket: the full minute may be used as a burst).',
    default: 60,
    min: 1,
    max: 100_000,
  }),
  concurrentRunsPerAgent: integerVar('CORDON_EXECUTOR_CONCURRENT_RUNS_PER_AGENT', {
    description: 'Runs one agent may have in progress at once.',
    default: 4,
    min: 1,
    max: 10_000,
  }),
  redisUrl: stringVar('CORDON_RATE_LIMIT_REDIS_URL', {
    description:
      'Redis that holds the limits, so they hold across executor replicas; empty keeps them in this process.',
    default: '',
    pattern: /^rediss?:\/\/\S+$/,
    allowed: 'a redis:// or rediss:// URL, such as redis://127.0.0.1:6379/0',
  }),
  maxDeadlineMs: durationMsVar('CORDON_EXECUTOR_MAX_DEADLINE_MS', {
    description:
      'Longest deadline an Execute call may set; it also bounds how long a run holds a concurrency slot in Redis.',
    default: 600_000,
    min: 1_000,
    max: 3_600_000,
  }),
};

export type RunLimitConfig = ConfigValues<typeof runLimitConfigSpec>;

/** A run that was admitted; `release` frees its concurrency slot and is safe to call twice. */
export interface RunLease {
  release(): Promise<void>;
}

/** Admits or refuses the runs of each agent. */
export interface RunLimiter {
  /** "in-process" or "redis". */
  readonly store: string;
  /**
   * Takes one run from the agent's bucket and one concurrency slot, or throws
   * RESOURCE_EXHAUSTED with retry_after_ms in the error details.
   * `leaseMs` bounds how long a slot stays taken if this process dies.
   */
  acquire(agentId: string, leaseMs: number): Promise<RunLease>;
  close(): Promise<void>;
}

/** What one admission check decided. */
type Decision =
  | { readonly admitted: true }
  | { readonly admitted: false; readonly kind: 'rate'; readonly retryAfterMs: number }
  | { readonly admitted: false; readonly kind: 'concurrency'; readonly active: number };

/** Hint sent when an agent is at its concurrency limit; nothing tells when one of its runs ends. */
const CONCURRENCY_RETRY_AFTER_MS = 1_000;

function refusal(agentId: string, decision: Decision, limits: RunLimitConfig): CordonError {
  if (decision.admitted) throw new TypeError('an admitted run has no refusal');
  if (decision.kind === 'rate') {
    return new CordonError(
      status.RESOURCE_EXHAUSTED,
      `agent ${agentId} started ${limits.runsPerMinute} runs within the last minute, the maximum (CORDON_EXECUTOR_RUNS_PER_MINUTE); retry after ${decision.retryAfterMs} ms`,
      { details: { retryAfterMs: decision.retryAfterMs } },
    );
  }
  return new CordonError(
    status.RESOURCE_EXHAUSTED,
    `agent ${agentId} has ${decision.active} runs in progress, the maximum (CORDON_EXECUTOR_CONCURRENT_RUNS_PER_AGENT); retry when one has finished`,
    { details: { retryAfterMs: CONCURRENCY_RETRY_AFTER_MS } },
  );
}

interface AgentState {
  tokens: number;
  refilledAtMs: number;
  active: number;
}

/** Limits kept in this process: right for one executor, not shared across replicas. */
class InProcessLimiter implements RunLimiter {
  readonly store = 'in-process';
  private readonly agents = new Map<string, AgentState>();

  constructor(private readonly limits: RunLimitConfig) {}

  acquire(agentId: string): Promise<RunLease> {
    const { runsPerMinute, concurrentRunsPerAgent } = this.limits;
    const nowMs = Date.now();
    const state = this.agents.get(agentId) ?? {
      tokens: runsPerMinute,
      refilledAtMs: nowMs,
      active: 0,
    };
    const ratePerMs = runsPerMinute / 60_000;
    state.tokens = Math.min(runsPerMinute, state.tokens + (nowMs - state.refilledAtMs) * ratePerMs);
    state.refilledAtMs = nowMs;
    this.agents.set(agentId, state);

    if (state.active >= concurrentRunsPerAgent) {
      throw refusal(
        agentId,
        { admitted: false, kind: 'concurrency', active: state.active },
        this.limits,
      );
    }
    if (state.tokens < 1) {
      const retryAfterMs = Math.ceil((1 - state.tokens) / ratePerMs);
      throw refusal(agentId, { admitted: false, kind: 'rate', retryAfterMs }, this.limits);
    }
    state.tokens -= 1;
    state.active += 1;

    let released = false;
    return Promise.resolve({
      release: () => {
        if (!released) {
          released = true;
          state.active -= 1;
        }
        return Promise.resolve();
      },
    });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * One atomic admission step in Redis, on Redis's own clock so replicas with
 * different clocks agree. KEYS[1] is the agent's bucket (a hash of tokens
 * and the time of the last refill), KEYS[2] its running leases (a sorted set
 * scored by expiry). Returns {1} when admitted, {0, retry_after_ms} when
 * the bucket is empty, {-1, active} when the agent is at its concurrency limit.
 */
const ACQUIRE_SCRIPT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local capacity = tonumber(ARGV[1])
local max_active = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[4])
local rate = capacity / 60000
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local active = redis.call('ZCARD', KEYS[2])
if active >= max_active then
  return {-1, active}
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
if tokens < 1 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
  redis.call('PEXPIRE', KEYS[1], 120000)
  return {0, math.ceil((1 - tokens) / rate)}
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'at', now)
redis.call('PEXPIRE', KEYS[1], 120000)
redis.call('ZADD', KEYS[2], now + lease_ms, ARGV[3])
redis.call('PEXPIRE', KEYS[2], lease_ms + 1000)
return {1}
`;

/** Limits in Redis, shared by every executor that uses the same Redis and prefix. */
class RedisLimiter implements RunLimiter {
  readonly store = 'redis';
  private readonly redis: Redis;

  constructor(
    url: string,
    private readonly limits: RunLimitConfig,
    private readonly keyPrefix: string,
  ) {
    this.redis = new Redis(url, {
      lazyConnect: true,
      maxRetriesPerRequest: 1,
      connectTimeout: 2_000,
      enableOfflineQueue: true,
    });
    this.redis.defineCommand('cordonAcquireRun', { numberOfKeys: 2, lua: ACQUIRE_SCRIPT });
  }

  async connect(): Promise<void> {
    await this.redis.connect();
  }

  async acquire(agentId: string, leaseMs: number): Promise<RunLease> {
    // The hash tag keeps both keys of an agent in one Redis Cluster slot.
    const bucketKey = `${this.keyPrefix}{${agentId}}:bucket`;
    const leasesKey = `${this.keyPrefix}{${agentId}}:runs`;
    const leaseId = randomUUID();
    let reply: unknown;
    try {
      reply = await (
        this.redis as Redis & {
          cordonAcquireRun(...args: (string | number)[]): Promise<unknown>;
        }
      ).cordonAcquireRun(
        bucketKey,
        leasesKey,
        this.limits.runsPerMinute,
        this.limits.concurrentRunsPerAgent,
        leaseId,
        leaseMs,
      );
    } catch (error) {
      throw new CordonError(
        status.UNAVAILABLE,
        'the run limiter could not reach its Redis, so no run is admitted; try again later',
        { cause: error },
      );
    }

    const [verdict, value] = reply as [number, number?];
    if (verdict === 0) {
      throw refusal(
        agentId,
        { admitted: false, kind: 'rate', retryAfterMs: value ?? 1 },
        this.limits,
      );
    }
    if (verdict === -1) {
      throw refusal(
        agentId,
        { admitted: false, kind: 'concurrency', active: value ?? 0 },
        this.limits,
      );
    }

    let released = false;
    return {
      release: async () => {
        if (released) return;
        released = true;
        // A slot that cannot be freed now expires with its lease.
        await this.redis.zrem(leasesKey, leaseId).catch(() => undefined);
      },
    };
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/** Key prefix of the limiter's Redis keys. */
export const RATE_LIMIT_KEY_PREFIX = 'cordon:runlimit:';

/** Creates the limiter the configuration asks for; a Redis one connects before it returns. */
export async function createRunLimiter(
  limits: RunLimitConfig,
  keyPrefix = RATE_LIMIT_KEY_PREFIX,
): Promise<RunLimiter> {
  if (limits.redisUrl === '') return new InProcessLimiter(limits);
  const limiter = new RedisLimiter(limits.redisUrl, limits, keyPrefix);
  await limiter.connect();
  return limiter;
}
