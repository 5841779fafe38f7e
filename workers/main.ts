/**
 * The container entrypoint (infra/Dockerfile): `node dist/workers/main.js <role>`, or the role in FORGE_ROLE.
 *
 *   orchestrator  trainingJob workflows + control activities on forge-orchestrator (workers/orchestrator.ts)
 *   api           the HTTP API (client/api/server.ts)
 *   rollout       GPU rollout worker on forge-rollout (workers/rollout.ts)
 *   grpo          GRPO trainer host on forge-grpo and forge-grpo@<hostId> (workers/grpo.ts)
 *   setup         one-shot: registers the Forge* search attributes in TEMPORAL_NAMESPACE, then exits 0
 *
 * A role is a module beside this one (or client/api/server) that exports `main(): Promise<void>`. A role whose
 * module is not in this build fails at once with a message that says so, exit code 64 (EX_USAGE).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { runMain } from './run-main';

export const ROLES = {
  orchestrator: { module: './orchestrator', what: 'trainingJob workflows and control activities (forge-orchestrator)' },
  api: { module: '../client/api/server', what: 'the HTTP API' },
  rollout: { module: './rollout', what: 'GPU rollout worker (forge-rollout)' },
  grpo: { module: './grpo', what: 'GRPO trainer host (forge-grpo, forge-grpo@<hostId>)' },
  setup: { module: '../infra/setup', what: 'registers the Forge* search attributes, then exits' },
} as const;
export type Role = keyof typeof ROLES;

export class RoleError extends Error {
  override name = 'RoleError';
}

function isRole(name: string): name is Role {
  return Object.prototype.hasOwnProperty.call(ROLES, name);
}

function roleList(): string {
  return Object.entries(ROLES)
    .map(([name, r]) => `  ${name.padEnd(13)} ${r.what}`)
    .join('\n');
}

/** The file a role's module compiles to, next to this one (works from the sources under ts-node/jest too). */
function moduleFile(role: Role): string | undefined {
  const base = path.resolve(__dirname, ROLES[role].module);
  return ['.js', '.ts'].map((ext) => base + ext).find((f) => existsSync(f));
}

/** Loads a role's main(); a RoleError that names the problem when the role is unknown or not in this build. */
export function resolveRole(name: string | undefined): { role: Role; main: () => Promise<void> } {
  if (!name) throw new RoleError(`no role given: run \`main.js <role>\` or set FORGE_ROLE; roles:\n${roleList()}`);
  if (!isRole(name)) throw new RoleError(`unknown role "${name}"; roles:\n${roleList()}`);
  const file = moduleFile(name);
  if (!file) {
    throw new RoleError(
      `role "${name}" (${ROLES[name].what}) is not built into this image: ${ROLES[name].module.replace(/^\.\//, 'workers/')}.ts does not exist in this version`,
    );
  }
  const mod = require(file) as { main?: unknown };
  if (typeof mod.main !== 'function') throw new RoleError(`role "${name}": ${file} exports no main() function`);
  const main = mod.main as () => Promise<void>;
  return { role: name, main };
}

if (require.main === module) {
  const name = process.argv[2] ?? process.env.FORGE_ROLE;
  let resolved: ReturnType<typeof resolveRole>;
  try {
    resolved = resolveRole(name);
  } catch (err) {
    console.error(`[forge] ${(err as Error).message}`);
    process.exit(64);
  }
  runMain(resolved.role, resolved.main);
}
