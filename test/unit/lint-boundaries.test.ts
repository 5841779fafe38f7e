/**
 * The rooms of docs/architecture.md §2 are kept by ESLint (eslint.config.mjs). These snippets, linted in memory with
 * ESLint's API as if they were files of the named room, pin the rule so that it cannot vanish silently: each known
 * kind of violation must fail, and the allowed forms must pass. ESLint runs in a child process (it loads the ESM
 * config with a dynamic import, which Jest's module registry does not offer).
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');

interface Case {
  file: string;
  code: string;
}

/** The rule ids each case reports, in order. */
function lint(cases: Case[]): string[][] {
  const script = `
    const { ESLint } = require('eslint');
    const cases = JSON.parse(process.argv[1]);
    (async () => {
      const eslint = new ESLint({ cwd: ${JSON.stringify(ROOT)} });
      const out = [];
      for (const c of cases) {
        const [r] = await eslint.lintText(c.code, { filePath: c.file });
        out.push(r.messages.map((m) => m.ruleId ?? m.message));
      }
      process.stdout.write(JSON.stringify(out));
    })().catch((e) => { console.error(e); process.exit(1); });`;
  return JSON.parse(execFileSync(process.execPath, ['-e', script, JSON.stringify(cases)], { cwd: ROOT, encoding: 'utf8' })) as string[][];
}

const BOUNDARY = '@typescript-eslint/no-restricted-imports';

test('violations of the rooms fail, allowed imports pass', () => {
  const cases: Array<Case & { fails: boolean }> = [
    // activities must not take contract names from workflows/ (they live in common/names.ts)
    { file: 'activities/x.ts', code: "import { jobWorkflowId } from '../workflows/training-job';\nexport const a = jobWorkflowId;\n", fails: true },
    { file: 'activities/x.ts', code: "import { jobWorkflowId } from '../common/names';\nexport const a = jobWorkflowId;\n", fails: false },
    // ...but may call a workflow through its message definitions, and use its types
    { file: 'activities/x.ts', code: "import { statusQuery } from '../workflows/messages';\nexport const q = statusQuery;\n", fails: false },
    { file: 'activities/rl/x.ts', code: "import type { RlProgress } from '../../workflows/grpo-run';\nexport type P = RlProgress;\n", fails: false },
    // workflows take values from activities never; types always
    { file: 'workflows/x.ts', code: "import { RL_BACKEND } from '../activities/rl/collect';\nexport const b = RL_BACKEND;\n", fails: true },
    { file: 'workflows/x.ts', code: "import { type PolicyRef, uploadId } from '../activities/rl/types';\nexport const u = uploadId;\nexport type P = PolicyRef;\n", fails: true },
    { file: 'workflows/rl/x.ts', code: "import type { PolicyRef } from '../../activities/rl/types';\nexport type P = PolicyRef;\n", fails: false },
    // workflows: only workflow-safe common/ modules as values, no Node built-ins
    { file: 'workflows/x.ts', code: "import { forgeHome } from '../common/paths';\nexport const h = forgeHome;\n", fails: true },
    { file: 'workflows/lifecycle/x.ts', code: "import { fnv1a } from '../../common/prng';\nexport const f = fnv1a;\n", fails: false },
    { file: 'workflows/x.ts', code: "import { readFileSync } from 'node:fs';\nexport const r = readFileSync;\n", fails: true },
    // clients do not run backends
    { file: 'client/cli/x.ts', code: "import { createBackends } from '../../activities/backends/registry';\nexport const c = createBackends;\n", fails: true },
    { file: 'client/api/routes/x.ts', code: "import type { Backend } from '../../../activities/backends/types';\nexport type B = Backend;\n", fails: false },
    // ...not even the API's process entry: it reads backends through their read entities and holds no credentials
    { file: 'client/api/server.ts', code: "import { createBackends } from '../../activities/backends/registry';\nexport const c = createBackends;\n", fails: true },
    // ...except the composition roots: the operator tools that run backend code in-process
    { file: 'client/cli/cf-reap.ts', code: "import { createBackends } from '../../activities/backends/registry';\nexport const c = createBackends;\n", fails: false },
    { file: 'client/cli/cf-submit-training.ts', code: "import { createBackends } from '../../activities/backends/registry';\nexport const c = createBackends;\n", fails: true },
    { file: 'client/cli/cf-reap.ts', code: "import { spawnTest } from '../../test/helpers/x';\nexport const s = spawnTest;\n", fails: true },
    // the inner rooms
    { file: 'jobspec/x.ts', code: "import { forgeHome } from '../common/paths';\nexport const h = forgeHome;\n", fails: true },
    { file: 'common/x.ts', code: "import { statusQuery } from '../workflows/messages';\nexport const q = statusQuery;\n", fails: true },
  ];
  const results = lint(cases);
  const got = cases.map((c, i) => ({ file: c.file, code: c.code.split('\n')[0], fails: results[i]!.includes(BOUNDARY) }));
  expect(got).toEqual(cases.map((c) => ({ file: c.file, code: c.code.split('\n')[0], fails: c.fails })));
});

test('a line over 150 characters fails', () => {
  const long = `export const x = [${Array.from({ length: 40 }, (_, i) => i + 1000).join(', ')}];\n`;
  expect(long.length).toBeGreaterThan(151);
  expect(lint([{ file: 'common/x.ts', code: long }])[0]).toContain('@stylistic/max-len');
});
