// ESLint (flat config): the rooms of docs/architecture.md §2 as import boundaries, and lines of at most 150 characters.
// The boundary rule is pinned by test/unit/lint-boundaries.test.ts (a violating snippet must fail).
import tseslint from 'typescript-eslint';
import stylistic from '@stylistic/eslint-plugin';

/** An import of room `room` from anywhere in another room: relative imports only go up, then down into it. */
const into = (room) => `^(\\.\\./)+${room}(/|$)`;

/** Modules of common/ that workflow code may import as values: pure, no Node built-ins, no I/O. */
export const WORKFLOW_SAFE_COMMON = ['names', 'prng', 'rl-names', 'rl-rejections'];

const msg = (room, why) => `${room}: ${why} (docs/architecture.md §2).`;

/** Per room: the import patterns it may not use. `allowTypeImports`: `import type` stays allowed. */
export const ROOMS = {
  jobspec: [{ regex: into('(workflows|activities|client|common|workers|infra|bench|test)'), message: msg('jobspec/', 'the job-spec room imports only jobspec/') }],
  common: [{ regex: into('(workflows|activities|client|workers|infra|bench|test)'), message: msg('common/', 'imports only jobspec/ and common/') }],
  workflows: [
    { regex: into('(client|workers|infra|bench|test)'), message: msg('workflows/', 'workflow code imports only jobspec/, workflow-safe common/ and workflows/') },
    {
      regex: into('activities'),
      allowTypeImports: true,
      message: msg('workflows/', 'activities run outside the workflow sandbox: import their types with `import type`, move shared values to common/'),
    },
    {
      regex: `^(\\.\\./)+common/(?!(${WORKFLOW_SAFE_COMMON.join('|')})$)`,
      allowTypeImports: true,
      message: msg('workflows/', `of common/ only ${WORKFLOW_SAFE_COMMON.join(', ')} are workflow-safe values; others via \`import type\``),
    },
    { regex: '^node:', message: msg('workflows/', 'no Node built-ins in workflow code (deterministic sandbox)') },
    {
      regex: '^@temporalio/(client|worker|activity)$',
      allowTypeImports: true,
      message: msg('workflows/', 'workflow code uses @temporalio/workflow; the client, worker and activity SDKs only as types'),
    },
  ],
  activities: [
    { regex: into('(client|workers|infra|bench|test)'), message: msg('activities/', 'imports only jobspec/, common/, activities/ and the workflows\' messages') },
    {
      // The message definitions (queries, updates) are the workflows' public contract: an activity that queries or
      // updates a workflow as a Temporal client imports them; everything else of workflows/ only as types.
      regex: `^(\\.\\./)+workflows/(?!(messages|capacity/messages)$)`,
      allowTypeImports: true,
      message: msg('activities/', 'of workflows/ only messages.ts and capacity/messages.ts as values; contract names live in common/'),
    },
  ],
  client: [
    { regex: into('(workers|infra|bench|test)'), message: msg('client/', 'imports only jobspec/, common/, the workflows\' contract and client/') },
    {
      regex: into('activities'),
      allowTypeImports: true,
      message: msg('client/', 'clients do not run activities or backends: import their types with `import type`, shared values from common/'),
    },
  ],
  workers: [{ regex: into('(bench|test)'), message: msg('workers/', 'imports no benchmark or test code') }],
  infra: [{ regex: into('(bench|test)'), message: msg('infra/', 'imports no benchmark or test code') }],
  bench: [{ regex: into('test/(?!fakes/)'), message: msg('bench/', 'of test/ only the local fakes (test/fakes/)') }],
};

const boundaries = Object.entries(ROOMS).map(([room, patterns]) => ({
  files: [`${room}/**/*.ts`],
  rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns }] },
}));

/**
 * Composition roots outside workers/ (docs/architecture.md §2): the API's process entry, which builds the backends'
 * read side, and the operator tools that run backend, reaper or eval code in-process. They may import activities/ as
 * values; the rest of client/'s rule holds for them.
 */
export const CLIENT_COMPOSITION_ROOTS = [
  'client/cli/cf-eval.ts',
  'client/cli/cf-export-elites.ts',
  'client/cli/cf-reap.ts',
  'client/cli/cf-sdl.ts',
];
const compositionRoots = {
  files: CLIENT_COMPOSITION_ROOTS,
  rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns: ROOMS.client.filter((p) => p.regex !== into('activities')) }] },
};

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', '.tools/**', '.forge/**', 'trainer/**', 'coverage/**', '**/*.d.ts'] },
  {
    files: ['**/*.ts'],
    languageOptions: { parser: tseslint.parser },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    plugins: { '@typescript-eslint': tseslint.plugin, '@stylistic': stylistic },
    rules: {
      '@stylistic/max-len': ['error', { code: 150, ignoreUrls: true, ignoreStrings: true, ignoreTemplateLiterals: true, ignoreRegExpLiterals: true }],
    },
  },
  ...boundaries,
  compositionRoots,
);
