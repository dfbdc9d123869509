import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * Returns where a service keeps a file or folder of state by default: under
 * /var/lib/cordon for root, under the user's XDG state folder otherwise.
 * Reads XDG_STATE_HOME, a desktop convention rather than a CORDON_* setting.
 */
export function defaultStatePath(name: string): string {
  if (process.getuid?.() === 0) {
    return join('/var/lib/cordon', name);
  }
  const stateHome = process.env['XDG_STATE_HOME'];
  const base =
    stateHome !== undefined && stateHome.startsWith('/')
      ? stateHome
      : join(homedir(), '.local', 'state');
  return join(base, 'cordon', name);
}
