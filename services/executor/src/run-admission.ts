import {
  CordonError,
  createRunLimiter,
  readConfig,
  runLimitConfigSpec,
  type CallContext,
  type Logger,
  type RunLease,
  type RunLimitConfig,
  type RunLimiter,
} from '@cordon/service-kit';

/** How long a concurrency slot outlives its call's deadline, for the kill and removal after it. */
const LEASE_GRACE_MS = 30_000;
/** Deadlines this much above the maximum pass, because the client's clock started before ours. */
const DEADLINE_TOLERANCE_MS = 1_000;

/** Decides whether an Execute call may start a run: its deadline, then the agent's run limits. */
export interface RunAdmission {
  readonly limits: RunLimitConfig;
  /** Throws INVALID_ARGUMENT unless the call has a deadline within CORDON_EXECUTOR_MAX_DEADLINE_MS. */
  checkDeadline(context: CallContext): void;
  /** Takes a run of the agent's budget, or throws RESOURCE_EXHAUSTED with a retry-after. */
  acquire(agentId: string, context: CallContext): Promise<RunLease>;
  close(): Promise<void>;
}

/** Reads the run limit settings and connects the limiter they name. */
export async function createRunAdmission(logger: Logger): Promise<RunAdmission> {
  const limits = readConfig(runLimitConfigSpec);
  const limiter: RunLimiter = await createRunLimiter(limits);
  logger.info(
    {
      runs_per_minute: limits.runsPerMinute,
      concurrent_runs_per_agent: limits.concurrentRunsPerAgent,
      max_deadline_ms: limits.maxDeadlineMs,
      store: limiter.store,
    },
    'per-agent run limits',
  );

  return {
    limits,
    checkDeadline: (context) => {
      if (context.deadlineMs === undefined) {
        throw CordonError.invalidArgument(
          'deadline',
          `Execute needs a call deadline; set one of at most ${limits.maxDeadlineMs} ms (CORDON_EXECUTOR_MAX_DEADLINE_MS)`,
        );
      }
      const remainingMs = context.deadlineMs - Date.now();
      if (remainingMs > limits.maxDeadlineMs + DEADLINE_TOLERANCE_MS) {
        throw CordonError.invalidArgument(
          'deadline',
          `${remainingMs} ms from now is above this server's maximum ${limits.maxDeadlineMs} ms; set a shorter deadline or raise CORDON_EXECUTOR_MAX_DEADLINE_MS`,
        );
      }
    },
    acquire: (agentId, context) => {
      const remainingMs = (context.deadlineMs ?? Date.now() + limits.maxDeadlineMs) - Date.now();
      return limiter.acquire(agentId, Math.max(remainingMs, 0) + LEASE_GRACE_MS);
    },
    close: () => limiter.close(),
  };
}
