import { status, type Metadata } from '@grpc/grpc-js';
import { CordonError } from '@cordon/service-kit';

export const AGENT_ID_METADATA_KEY = 'x-cordon-agent-id';

/**
 * Agent ids the memory service accepts. The id becomes part of Redis key
 * names, a Redis ACL user name and a key glob pattern, so it may not hold
 * `{`, `}`, `:`, `*`, `?`, `[`, `\` or spaces.
 */
export const AGENT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const AGENT_ID_RULE =
  '1 to 64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit';

/**
 * Returns the calling agent's id. This is the only place the service learns
 * which agent calls; no request field can name an agent.
 *
 * NOTE: the metadata value is not verified, so any client can claim any
 * agent id. The identity layer will replace this function with one that
 * reads a verified token.
 */
export function callerAgentId(metadata: Metadata): string {
  const values = metadata.get(AGENT_ID_METADATA_KEY);
  if (values.length === 0) {
    throw new CordonError(
      status.UNAUTHENTICATED,
      `${AGENT_ID_METADATA_KEY} metadata is missing; send the calling agent's id (${AGENT_ID_RULE})`,
    );
  }
  if (values.length > 1) {
    throw new CordonError(
      status.UNAUTHENTICATED,
      `${AGENT_ID_METADATA_KEY} metadata was sent ${values.length} times; send it once`,
    );
  }

  const [value] = values;
  if (typeof value !== 'string' || !AGENT_ID_PATTERN.test(value)) {
    throw new CordonError(
      status.UNAUTHENTICATED,
      `${AGENT_ID_METADATA_KEY} metadata is not a valid agent id; expected ${AGENT_ID_RULE}`,
    );
  }
  return value;
}
