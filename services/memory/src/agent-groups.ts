import { ConfigError } from '@cordon/service-kit';

/** One entry of CORDON_MEMORY_AGENT_GROUPS: which agents a group's Redis stores. */
export interface AgentGroupEntry {
  /** An exact agent id, or the prefix before a trailing `*`. */
  readonly pattern: string;
  readonly isPrefix: boolean;
  /** Upper-case group name, the suffix of its CORDON_MEMORY_REDIS_URL_<group> variable. */
  readonly group: string;
}

const ENTRY_PATTERN = /^([A-Za-z0-9._-]*)(\*?)=([A-Za-z0-9_]{1,32})$/;

/**
 * Parses "lab-*=research,ci-7=ci" into entries in the order written. An
 * empty text has no entries; a malformed entry throws a ConfigError that
 * shows it.
 */
export function parseAgentGroups(text: string): AgentGroupEntry[] {
  if (text === '') {
    return [];
  }
  return text.split(',').map((entry) => {
    const match = ENTRY_PATTERN.exec(entry);
    const [, pattern, star, group] = match ?? [];
    if (pattern === undefined || group === undefined || (pattern === '' && star !== '*')) {
      throw new ConfigError(
        'CORDON_MEMORY_AGENT_GROUPS',
        `invalid configuration: CORDON_MEMORY_AGENT_GROUPS entry ${JSON.stringify(entry)} is invalid: expected <agent id>=<group> or <agent id prefix>*=<group>, with ids of A-Z a-z 0-9 . _ - and groups of A-Z a-z 0-9 _`,
      );
    }
    return { pattern, isPrefix: star === '*', group: group.toUpperCase() };
  });
}

/** Returns the first entry that matches an agent id, or undefined when none does. */
export function matchAgentGroup<T extends AgentGroupEntry>(
  entries: readonly T[],
  agentId: string,
): T | undefined {
  return entries.find((entry) =>
    entry.isPrefix ? agentId.startsWith(entry.pattern) : agentId === entry.pattern,
  );
}
