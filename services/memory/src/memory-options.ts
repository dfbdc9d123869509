import {
  addressVar,
  bytesVar,
  ConfigError,
  defaultStatePath,
  durationMsVar,
  formatBytes,
  integerVar,
  stringVar,
  type ConfigValues,
  type KitConfig,
} from '@cordon/service-kit';
import { parseAgentGroups, type AgentGroupEntry } from './agent-groups.js';
import { parseRedisUrl, type RedisEndpoint } from './redis-endpoint.js';

const KiB = 1024;
const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const DAY_SECONDS = 86_400;

/** Room in a Put request or Get response for everything besides the value. */
const MESSAGE_OVERHEAD_BYTES = 64 * KiB;

/** Returns the database path used when CORDON_MEMORY_DB_PATH is unset. */
export function defaultDatabasePath(): string {
  return defaultStatePath('memory.db');
}

export const memoryConfigSpec = {
  redisUrl: stringVar('CORDON_MEMORY_REDIS_URL', {
    description:
      'Redis that stores every agent outside CORDON_MEMORY_AGENT_GROUPS; when unset, memory is kept in the embedded SQLite file.',
    default: '',
    // Any text passes here and parseRedisUrl checks it, because the kit's
    // message would repeat a rejected value, and a URL can hold a password.
    pattern: /^[\s\S]+$/,
    allowed: 'a redis:// or rediss:// URL, such as redis://127.0.0.1:6379/0',
  }),
  agentGroups: stringVar('CORDON_MEMORY_AGENT_GROUPS', {
    description:
      'Agents stored on their own Redis: comma-separated <agent id or prefix*>=<group> entries, first match wins; group G uses CORDON_MEMORY_REDIS_URL_G.',
    default: '',
    pattern: /^\S+$/,
    allowed: 'entries such as lab-*=research,ci-7=ci, without spaces',
  }),
  databasePath: stringVar('CORDON_MEMORY_DB_PATH', {
    description:
      'SQLite file of the embedded store, used when no Redis is configured; its folder is created when missing.',
    default: defaultDatabasePath(),
    pattern: /^\/\S+$/,
    allowed: 'an absolute file path without spaces, such as /var/lib/cordon/memory.db',
  }),
  maxValueBytes: bytesVar('CORDON_MEMORY_MAX_VALUE_BYTES', {
    description: 'Largest value one Put may store.',
    default: MiB,
    min: 1,
    max: 64 * MiB,
  }),
  maxKeysPerAgent: integerVar('CORDON_MEMORY_MAX_KEYS_PER_AGENT', {
    description: 'Keys one agent may store across all its namespaces.',
    default: 10_000,
    min: 1,
    max: 10_000_000,
  }),
  maxBytesPerAgent: bytesVar('CORDON_MEMORY_MAX_BYTES_PER_AGENT', {
    description: 'Total size of the values one agent may store.',
    default: 64 * MiB,
    min: 1,
    max: 64 * GiB,
  }),
  maxTtlSeconds: integerVar('CORDON_MEMORY_MAX_TTL_SECONDS', {
    description: 'Largest ttl_seconds a Put may ask for.',
    default: 30 * DAY_SECONDS,
    min: 1,
    max: 3650 * DAY_SECONDS,
  }),
  defaultTtlSeconds: integerVar('CORDON_MEMORY_DEFAULT_TTL_SECONDS', {
    description:
      'TTL of a Put that leaves ttl_seconds unset or 0; 0 keeps such values until deleted.',
    default: 0,
    min: 0,
    max: 3650 * DAY_SECONDS,
  }),
  defaultPageSize: integerVar('CORDON_MEMORY_DEFAULT_PAGE_SIZE', {
    description: 'Keys per List page when the request sets page_size 0.',
    default: 100,
    min: 1,
    max: 10_000,
  }),
  maxPageSize: integerVar('CORDON_MEMORY_MAX_PAGE_SIZE', {
    description: 'Largest page_size a List may ask for.',
    default: 1000,
    min: 1,
    max: 10_000,
  }),
  redisTimeoutMs: durationMsVar('CORDON_MEMORY_REDIS_TIMEOUT_MS', {
    description:
      'How long a Redis connection attempt or command may take before the call fails with UNAVAILABLE.',
    default: 2_000,
    min: 50,
    max: 60_000,
  }),
  healthIntervalMs: durationMsVar('CORDON_MEMORY_HEALTH_INTERVAL_MS', {
    description: 'Interval of the Redis checks that set the health status.',
    default: 1_000,
    min: 100,
    max: 60_000,
  }),
  aclRotationMs: durationMsVar('CORDON_MEMORY_ACL_ROTATION_MS', {
    description: 'Interval at which the password of every per-agent Redis user is replaced.',
    default: 3_600_000,
    min: 1_000,
    max: 30 * DAY_SECONDS * 1000,
  }),
  maxAgentConnections: integerVar('CORDON_MEMORY_MAX_AGENT_CONNECTIONS', {
    description:
      'Per-agent Redis connections kept open per Redis; the least recently used one is closed beyond this.',
    default: 256,
    min: 1,
    max: 10_000,
  }),
  auditAddress: addressVar('CORDON_AUDIT_ADDRESS', {
    description:
      'Audit service that receives every write, delete and denial; unset turns auditing off.',
    default: '',
  }),
};

export type MemoryConfig = ConfigValues<typeof memoryConfigSpec>;

/** Per-agent storage quotas and request maxima. */
export interface MemoryLimits {
  /** Largest value of one key. Default 1 MiB. */
  readonly maxValueBytes: number;
  /** Keys per agent. Default 10 000. */
  readonly maxKeysPerAgent: number;
  /** Total value bytes per agent. Default 64 MiB. */
  readonly maxBytesPerAgent: number;
  /** Largest TTL a Put may ask for. Default 30 days. */
  readonly maxTtlSeconds: number;
  /** TTL of a Put without one; 0 means no expiry. Default 0. */
  readonly defaultTtlSeconds: number;
  /** List page size when the request sets none. Default 100. */
  readonly defaultPageSize: number;
  /** Largest List page size. Default 1000. */
  readonly maxPageSize: number;
}

/** Redis connection, health and ACL settings. */
export interface RedisSettings {
  /** Connect and command timeout. Default 2 s. */
  readonly timeoutMs: number;
  /** Interval of health checks. Default 1 s. */
  readonly healthIntervalMs: number;
  /** Interval of per-agent password rotation. Default 1 h. */
  readonly aclRotationMs: number;
  /** Open per-agent connections per Redis. Default 256. */
  readonly maxAgentConnections: number;
}

/** The store: one SQLite file, or Redis with optional per-group instances. */
export type StoreSettings =
  | { readonly kind: 'embedded'; readonly databasePath: string }
  | {
      readonly kind: 'redis';
      /** Redis of every agent that matches no group. */
      readonly defaultEndpoint: RedisEndpoint;
      readonly groups: readonly (AgentGroupEntry & { readonly endpoint: RedisEndpoint })[];
    };

/** Memory settings after validation, with units in every name. */
export interface MemoryOptions {
  readonly store: StoreSettings;
  readonly limits: MemoryLimits;
  readonly redis: RedisSettings;
  /** Audit service address; undefined turns auditing off. */
  readonly auditAddress: string | undefined;
}

function configError(variable: string, message: string): ConfigError {
  return new ConfigError(variable, `invalid configuration: ${message}`);
}

function checkLimits(config: MemoryConfig, kit: KitConfig): void {
  if (config.defaultTtlSeconds > config.maxTtlSeconds) {
    throw configError(
      'CORDON_MEMORY_DEFAULT_TTL_SECONDS',
      `CORDON_MEMORY_DEFAULT_TTL_SECONDS (${config.defaultTtlSeconds}) is above CORDON_MEMORY_MAX_TTL_SECONDS (${config.maxTtlSeconds}); lower the default or raise the maximum`,
    );
  }
  if (config.defaultPageSize > config.maxPageSize) {
    throw configError(
      'CORDON_MEMORY_DEFAULT_PAGE_SIZE',
      `CORDON_MEMORY_DEFAULT_PAGE_SIZE (${config.defaultPageSize}) is above CORDON_MEMORY_MAX_PAGE_SIZE (${config.maxPageSize}); lower the default or raise the maximum`,
    );
  }

  const messageBytes = config.maxValueBytes + MESSAGE_OVERHEAD_BYTES;
  const messageLimit = Math.min(kit.maxReceiveMessageBytes, kit.maxSendMessageBytes);
  if (messageBytes > messageLimit) {
    throw configError(
      'CORDON_MEMORY_MAX_VALUE_BYTES',
      `a Put or Get of the largest value needs ${formatBytes(messageBytes)} (CORDON_MEMORY_MAX_VALUE_BYTES + 64KiB), above the gRPC message limit ${formatBytes(messageLimit)}; lower CORDON_MEMORY_MAX_VALUE_BYTES or raise CORDON_GRPC_MAX_RECEIVE_MESSAGE_BYTES and CORDON_GRPC_MAX_SEND_MESSAGE_BYTES`,
    );
  }
}

/**
 * Reads the per-group Redis URLs that CORDON_MEMORY_AGENT_GROUPS names, and
 * rejects a CORDON_MEMORY_REDIS_URL_<G> whose group no entry names, since
 * that is most likely a misspelt group whose agents would silently land on
 * the default Redis.
 */
function compileStore(config: MemoryConfig, env: NodeJS.ProcessEnv): StoreSettings {
  const groupEntries = parseAgentGroups(config.agentGroups);
  const groupNames = new Set(groupEntries.map((entry) => entry.group));
  for (const name of Object.keys(env)) {
    const suffix = /^CORDON_MEMORY_REDIS_URL_(.+)$/.exec(name)?.[1];
    if (suffix !== undefined && !groupNames.has(suffix)) {
      throw configError(
        name,
        `${name} is set but CORDON_MEMORY_AGENT_GROUPS maps no agent to group ${suffix}; add an entry such as "agent-*=${suffix}" or unset ${name}`,
      );
    }
  }

  if (config.redisUrl === '') {
    if (groupEntries.length > 0) {
      throw configError(
        'CORDON_MEMORY_REDIS_URL',
        'CORDON_MEMORY_AGENT_GROUPS is set but CORDON_MEMORY_REDIS_URL is not; set the Redis for agents outside every group',
      );
    }
    return { kind: 'embedded', databasePath: config.databasePath };
  }

  const endpoints = new Map<string, RedisEndpoint>();
  const endpointOf = (group: string): RedisEndpoint => {
    const variable = `CORDON_MEMORY_REDIS_URL_${group}`;
    const text = env[variable] ?? '';
    if (text === '') {
      throw configError(
        variable,
        `CORDON_MEMORY_AGENT_GROUPS maps agents to group ${group} but ${variable} is not set; set it to that group's redis:// URL`,
      );
    }
    const endpoint = endpoints.get(group) ?? parseRedisUrl(variable, text);
    endpoints.set(group, endpoint);
    return endpoint;
  };
  const groups = groupEntries.map((entry) => ({ ...entry, endpoint: endpointOf(entry.group) }));
  return {
    kind: 'redis',
    defaultEndpoint: parseRedisUrl('CORDON_MEMORY_REDIS_URL', config.redisUrl),
    groups,
  };
}

/**
 * Checks the settings against each other and the kit's message limits and
 * resolves the Redis of every group. Throws a one-line ConfigError when
 * something is not allowed.
 */
export function compileMemoryOptions(
  config: MemoryConfig,
  kit: KitConfig,
  env: NodeJS.ProcessEnv = process.env,
): MemoryOptions {
  checkLimits(config, kit);

  return {
    store: compileStore(config, env),
    limits: {
      maxValueBytes: config.maxValueBytes,
      maxKeysPerAgent: config.maxKeysPerAgent,
      maxBytesPerAgent: config.maxBytesPerAgent,
      maxTtlSeconds: config.maxTtlSeconds,
      defaultTtlSeconds: config.defaultTtlSeconds,
      defaultPageSize: config.defaultPageSize,
      maxPageSize: config.maxPageSize,
    },
    redis: {
      timeoutMs: config.redisTimeoutMs,
      healthIntervalMs: config.healthIntervalMs,
      aclRotationMs: config.aclRotationMs,
      maxAgentConnections: config.maxAgentConnections,
    },
    auditAddress: config.auditAddress === '' ? undefined : config.auditAddress,
  };
}
