export { createExecutor, type Executor } from './executor-service.js';
export {
  compileExecutorOptions,
  executorConfigSpec,
  LIMIT_FIELDS,
  LIMIT_SPECS,
  type ExecutorOptions,
  type RunLimits,
} from './executor-options.js';
export { EXECUTOR_ID_LABEL, RUN_ID_LABEL } from './drivers/docker.js';
