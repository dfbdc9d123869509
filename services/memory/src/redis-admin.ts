import type { Redis } from 'ioredis';
import { ConfigError, type Logger } from '@cordon/service-kit';
import type { RedisEndpoint } from './redis-endpoint.js';
import { aclKeyPattern, aclUserName } from './redis-keys.js';
import { SCRIPT_COMMANDS } from './redis-scripts.js';

/** Commands of the memory service's administrative Redis connection: server checks and ACL users. */

const MIN_REDIS_MAJOR_VERSION = 7;

/**
 * Checks a Redis once at start-up. A Redis older than 7, or a login that may
 * not manage ACL users, stops the service with a ConfigError. A Redis that
 * does not persist writes gets a warning.
 */
export async function checkServer(admin: Redis, display: string, logger: Logger): Promise<void> {
  const info = await admin.info('server');
  const version = /redis_version:(\d+)\.(\d+)\.(\d+)/.exec(info);
  if (Number(version?.[1] ?? 0) < MIN_REDIS_MAJOR_VERSION) {
    throw new ConfigError(
      'CORDON_MEMORY_REDIS_URL',
      `Redis at ${display} is version ${version?.slice(1).join('.') ?? 'unknown'}; the memory service needs Redis ${MIN_REDIS_MAJOR_VERSION} or newer, which applies ACL key patterns inside scripts`,
    );
  }

  try {
    await admin.call('ACL', 'USERS');
  } catch (error) {
    throw new ConfigError(
      'CORDON_MEMORY_REDIS_URL',
      `the Redis user of ${display} may not manage ACL users (${error instanceof Error ? error.message.slice(0, 120) : 'ACL USERS failed'}); log in as a user with +acl`,
    );
  }

  try {
    const [, appendOnly] = (await admin.call('CONFIG', 'GET', 'appendonly')) as string[];
    if (appendOnly === 'no') {
      logger.warn(
        { redis: display },
        'redis has appendonly off; acknowledged writes since the last snapshot are lost when it restarts',
      );
    }
  } catch (error) {
    // Managed Redis services often rename or forbid CONFIG.
    logger.debug({ redis: display, err: error }, 'redis persistence not checked');
  }
}

/**
 * Creates or updates an agent's ACL user and adds `password` to it. The
 * passwords other service instances added stay valid.
 */
export async function setAgentUser(
  admin: Redis,
  endpoint: RedisEndpoint,
  agentId: string,
  password: string,
): Promise<void> {
  const select = endpoint.db === 0 ? [] : ['+select'];
  await admin.call(
    'ACL',
    'SETUSER',
    aclUserName(agentId),
    'on',
    `>${password}`,
    'resetkeys',
    aclKeyPattern(agentId),
    'resetchannels',
    '-@all',
    '+evalsha',
    '+eval',
    ...SCRIPT_COMMANDS.map((command) => `+${command}`),
    ...select,
  );
}

/** Removes one password from an agent's ACL user, and logs at debug when it is already gone. */
export async function removeAgentPassword(
  admin: Redis,
  agentId: string,
  password: string,
  logger: Logger,
): Promise<void> {
  try {
    await admin.call('ACL', 'SETUSER', aclUserName(agentId), `<${password}`);
  } catch (error) {
    // After a Redis restart the user or the password may be gone already.
    logger.debug({ agent_id: agentId, err: error }, 'redis acl password not removed');
  }
}
