import { randomBytes } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '@cordon/service-kit';
import { checkServer, removeAgentPassword, setAgentUser } from './redis-admin.js';
import type { RedisEndpoint } from './redis-endpoint.js';
import { aclUserName } from './redis-keys.js';
import { storeUnavailable } from './store-errors.js';

export interface RedisConnectionSettings {
  readonly endpoint: RedisEndpoint;
  /** Connect and command timeout. */
  readonly timeoutMs: number;
  readonly aclRotationMs: number;
  readonly maxAgentConnections: number;
  readonly logger: Logger;
}

interface AgentSlot {
  /** This instance's current password of the agent's ACL user. */
  password: string;
  client: Redis | undefined;
  opening: Promise<Redis> | undefined;
}

/** How long a replaced connection stays open, so commands already handed to it still finish. */
const RETIRE_GRACE_MS = 1_000;
/** Maximum delay between reconnect attempts of the administrative connection. */
const MAX_RECONNECT_DELAY_MS = 1_000;

function newPassword(): string {
  return randomBytes(32).toString('hex');
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, operation: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Command timed out: ${operation}`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Connections to one Redis: an administrative one that manages ACL users and
 * checks health, and one per agent, authenticated as a Redis ACL user that
 * may touch only that agent's keys. So a bug that builds a key of agent B
 * while serving agent A meets a NOPERM from Redis instead of B's data.
 *
 * Each instance adds its own random password to an agent's user and, on
 * rotation, replaces only that one, so several instances can share a Redis.
 * Agent connections do not reconnect: a lost one is opened again, user and
 * password included, by the next call, which also restores users that a
 * Redis restart forgot.
 */
export class RedisConnections {
  private readonly admin: Redis;
  /** Agent slots in least-recently-used order, oldest first. */
  private readonly slots = new Map<string, AgentSlot>();
  private readonly retiring = new Set<Redis>();
  private rotationTimer: NodeJS.Timeout | undefined;
  private rotating = false;
  private closed = false;

  constructor(private readonly settings: RedisConnectionSettings) {
    this.admin = new Redis({
      ...this.baseOptions(),
      ...(settings.endpoint.username === undefined ? {} : { username: settings.endpoint.username }),
      ...(settings.endpoint.password === undefined ? {} : { password: settings.endpoint.password }),
      connectionName: 'cordon-memory-admin',
      retryStrategy: (attempt) => Math.min(attempt * 100, MAX_RECONNECT_DELAY_MS),
    });
    this.watchAdmin();
  }

  /** Redis as it appears in logs, without credentials. */
  get display(): string {
    return this.settings.endpoint.display;
  }

  get isReady(): boolean {
    return this.admin.status === 'ready';
  }

  /**
   * Connects and checks the server once. An unreachable Redis is not an
   * error: the service starts NOT_SERVING and connects when Redis comes up.
   * A Redis that is too old or a user that may not manage ACL users is.
   */
  async start(): Promise<void> {
    const { logger } = this.settings;
    try {
      await this.admin.connect();
    } catch (error) {
      logger.warn({ redis: this.display, err: error }, 'redis unreachable at start-up; retrying');
    }
    if (this.isReady) {
      await checkServer(this.admin, this.display, this.settings.logger);
    }
    this.rotationTimer = setInterval(
      () => void this.rotatePasswords(),
      this.settings.aclRotationMs,
    );
    this.rotationTimer.unref();
  }

  /** Resolves true when Redis replies to a PING within the timeout. */
  async ping(): Promise<boolean> {
    if (!this.isReady) {
      return false;
    }
    try {
      await this.admin.ping();
      return true;
    } catch {
      return false;
    }
  }

  /** Returns the agent's own connection, opening it (and its ACL user) when needed. */
  async forAgent(agentId: string): Promise<Redis> {
    let slot = this.slots.get(agentId);
    if (slot !== undefined) {
      this.slots.delete(agentId);
      this.slots.set(agentId, slot);
      if (slot.client?.status === 'ready') {
        return slot.client;
      }
      if (slot.opening !== undefined) {
        return slot.opening;
      }
    }
    if (!this.isReady) {
      throw storeUnavailable(new Error(`Connection is closed. (redis ${this.display})`));
    }

    if (slot === undefined) {
      slot = { password: newPassword(), client: undefined, opening: undefined };
      this.slots.set(agentId, slot);
    }
    const opening = this.openAgentConnection(agentId, slot);
    slot.opening = opening;
    try {
      return await opening;
    } finally {
      if (slot.opening === opening) {
        slot.opening = undefined;
      }
    }
  }

  /**
   * Gives every agent user a new password of this instance. Users without
   * an open connection only lose this instance's password; the next call
   * sets a fresh one.
   */
  async rotatePasswords(): Promise<void> {
    if (this.rotating) {
      return;
    }
    this.rotating = true;
    let rotated = 0;
    try {
      for (const [agentId, slot] of [...this.slots]) {
        if (this.closed || !this.isReady) {
          break;
        }
        await slot.opening?.catch(() => undefined);
        const client = slot.client;
        if (client === undefined) {
          this.slots.delete(agentId);
          await removeAgentPassword(this.admin, agentId, slot.password, this.settings.logger);
          continue;
        }

        const previous = slot.password;
        const next = newPassword();
        await setAgentUser(this.admin, this.settings.endpoint, agentId, next);
        slot.password = next;
        slot.client = undefined;
        this.retire(client);
        await removeAgentPassword(this.admin, agentId, previous, this.settings.logger);
        rotated += 1;
      }
      this.settings.logger.info(
        { redis: this.display, users: rotated },
        'redis acl passwords rotated',
      );
    } catch (error) {
      this.settings.logger.warn(
        { redis: this.display, err: error },
        'redis acl password rotation failed',
      );
    } finally {
      this.rotating = false;
    }
  }

  /** Removes this instance's passwords from Redis and closes every connection. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.rotationTimer);
    if (this.isReady) {
      await Promise.allSettled(
        [...this.slots].map(([agentId, slot]) =>
          removeAgentPassword(this.admin, agentId, slot.password, this.settings.logger),
        ),
      );
    }
    const clients = [
      ...this.retiring,
      ...[...this.slots.values()].flatMap((slot) => slot.client ?? []),
    ];
    this.slots.clear();
    this.retiring.clear();
    await Promise.allSettled([...clients, this.admin].map((client) => this.quit(client)));
  }

  private baseOptions(): Omit<RedisOptions, 'replyMapping'> {
    const { endpoint, timeoutMs } = this.settings;
    return {
      host: endpoint.host,
      port: endpoint.port,
      db: endpoint.db,
      ...(endpoint.tls ? { tls: {} } : {}),
      lazyConnect: true,
      // Fail at once while disconnected instead of queueing, and never
      // replay a command whose connection dropped: a retried Put could
      // apply twice.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: timeoutMs,
      connectTimeout: timeoutMs,
      // CLIENT SETINFO exists from Redis 7.2 on, and agent users may not run it.
      disableClientInfo: true,
    };
  }

  private watchAdmin(): void {
    const { logger } = this.settings;
    let connected = false;
    this.admin.on('ready', () => {
      connected = true;
      logger.info({ redis: this.display }, 'redis connected');
    });
    this.admin.on('close', () => {
      if (connected && !this.closed) {
        logger.warn({ redis: this.display }, 'redis connection lost; reconnecting');
      }
      connected = false;
    });
    // Without a listener ioredis prints errors to the console; the close
    // and ready events above already report each outage once.
    this.admin.on('error', (error: unknown) => {
      logger.debug({ redis: this.display, err: error }, 'redis connection error');
    });
  }

  private async openAgentConnection(agentId: string, slot: AgentSlot): Promise<Redis> {
    await setAgentUser(this.admin, this.settings.endpoint, agentId, slot.password);
    const client = new Redis({
      ...this.baseOptions(),
      username: aclUserName(agentId),
      password: slot.password,
      retryStrategy: () => null,
      // The ready check runs INFO, which agent users may not run; the
      // administrative connection already waited for Redis to load its data.
      enableReadyCheck: false,
      // Concurrent calls of one agent share its connection; sending the
      // commands of one event-loop turn in one write saves system calls.
      enableAutoPipelining: true,
    });
    client.on('error', (error: unknown) => {
      this.settings.logger.debug(
        { redis: this.display, err: error },
        'redis agent connection error',
      );
    });
    client.once('end', () => {
      if (slot.client === client) {
        slot.client = undefined;
      }
    });

    try {
      await withTimeout(client.connect(), this.settings.timeoutMs, 'connect');
    } catch (error) {
      client.disconnect();
      throw error;
    }
    if (this.closed) {
      client.disconnect();
      throw storeUnavailable(new Error('Connection is closed. (the memory service is stopping)'));
    }
    slot.client = client;
    this.closeLeastRecentlyUsed();
    return client;
  }

  private closeLeastRecentlyUsed(): void {
    let open = [...this.slots.values()].filter((slot) => slot.client !== undefined).length;
    for (const slot of this.slots.values()) {
      if (open <= this.settings.maxAgentConnections) {
        return;
      }
      if (slot.client !== undefined) {
        this.retire(slot.client);
        slot.client = undefined;
        open -= 1;
      }
    }
  }

  /** Closes a connection after a grace period in which commands already sent to it finish. */
  private retire(client: Redis): void {
    this.retiring.add(client);
    setTimeout(() => {
      this.retiring.delete(client);
      void this.quit(client);
    }, RETIRE_GRACE_MS).unref();
  }

  private async quit(client: Redis): Promise<void> {
    try {
      await withTimeout(client.quit(), this.settings.timeoutMs, 'quit');
    } catch {
      client.disconnect();
    }
  }
}
