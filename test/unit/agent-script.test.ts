/**
 * The forge agent's script comes from trainer/agent/ byte for byte as it was built in code before (so manifests of
 * Akash deployments made before the move rebuild to the same version), and the loader refuses what sh cannot carry.
 */
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { agentCommand, agentScriptText, loadAgentScript } from '../../activities/backends/remote/remote-agent-script';
import { repoRoot } from '../../common/paths';

/**
 * sha256 of the script every remote deployment runs. It is part of every Akash manifest: a replica without the
 * submitting worker's record rebuilds the manifest and must reach the version committed on chain. Changing the agent
 * therefore makes such rebuilds of deployments made before the change fail (LOST, the job retries with a new
 * attempt): when you change trainer/agent/ on purpose, update this hash and say so in the release notes.
 */
const SHIPPED_SHA256 = '2c1e711af10915056ff48078474c5dd654d6f9963cd8f3725174277e7c0660e9';

const tmp: string[] = [];
afterAll(() => tmp.forEach((d) => rmSync(d, { recursive: true, force: true })));

function agentCopy(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'forge-agent-files-'));
  tmp.push(dir);
  cpSync(path.join(repoRoot(), 'trainer', 'agent'), dir, { recursive: true });
  return dir;
}

test('the shipped script is the one deployed before it moved to trainer/agent/ (manifest versions unchanged)', () => {
  expect(createHash('sha256').update(agentScriptText()).digest('hex')).toBe(SHIPPED_SHA256);
  const script = agentScriptText();
  expect(script).not.toMatch(/^#|\{\{/m); // no file documentation and no placeholder is shipped
  expect(agentCommand(['forge-trainer', 'run'])).toEqual({ command: ['sh', '-c'], args: [script, 'forge-agent', 'forge-trainer', 'run'] });
});

test('a Python file with a single quote, or a missing file, is refused with what to do', () => {
  const dir = agentCopy();
  writeFileSync(path.join(dir, 'spec.py'), "print('x')\n");
  expect(() => loadAgentScript(dir)).toThrow(/trainer\/agent\/spec\.py contains a single quote: agent\.sh single-quotes it/);
  rmSync(path.join(dir, 'spec.py'));
  expect(() => loadAgentScript(dir)).toThrow(/the forge agent's spec\.py is missing .*needs trainer\/agent\/ next to dist\//);
});
