import { status } from '@grpc/grpc-js';
import {
  CordonError,
  SUBJECT_PATTERN,
  SUBJECT_RULE,
  type VerifiedCaller,
} from '@cordon/service-kit';

/**
 * Agent ids the memory service accepts: the ids tokens may carry. The id
 * becomes part of Redis key names, a Redis ACL user name and a key glob
 * pattern, so it may not hold `{`, `}`, `:`, `*`, `?`, `[`, `\` or spaces.
 */
export const AGENT_ID_PATTERN = SUBJECT_PATTERN;
export const AGENT_ID_RULE = SUBJECT_RULE;

/**
 * Returns the agent whose memory a call uses: the agent its verified token
 * names, or the agent a calling service proved it acts for. This is the
 * only place the service learns which agent calls; no request field can
 * name an agent.
 */
export function callerAgentId(caller: VerifiedCaller): string {
  if (caller.agentId === '') {
    throw new CordonError(
      status.PERMISSION_DENIED,
      `service ${caller.subject} called without naming the agent it acts for; send x-cordon-acting-for metadata`,
    );
  }
  // The token layer already checked the pattern; checking again keeps a
  // change there from reaching Redis key names.
  if (!AGENT_ID_PATTERN.test(caller.agentId)) {
    throw new CordonError(
      status.UNAUTHENTICATED,
      `the token's agent id is not valid; expected ${AGENT_ID_RULE}`,
    );
  }
  return caller.agentId;
}
