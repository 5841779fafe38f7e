/**
 * Whether the p2pfl tests can run here: '' when .tools/p2pfl-venv imports p2pfl, else why not (the bootstrap makes
 * that venv; FORGE_SKIP_P2PFL=1 or a failed install leaves it out, and the tests then skip, saying why).
 */
import { spawnSync } from 'node:child_process';
import { p2pflVenvPython } from '../../common/config';

export function p2pflMissing(): string {
  const python = p2pflVenvPython();
  const probe = spawnSync(python, ['-c', 'import p2pfl'], { encoding: 'utf8' });
  if (probe.error) return `${python} is missing (run npm run bootstrap)`;
  return probe.status !== 0 ? `p2pfl does not import: ${probe.stderr.trim().split('\n').at(-1)}` : '';
}
