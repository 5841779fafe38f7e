/**
 * docs/configuration.md cannot rot: each role's table lists exactly the variables its zod schema reads, with the
 * schema's defaults and required variables.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { apiEnvSchema } from '../../client/api/env';
import { temporalEnvSchema } from '../../common/temporal';
import { GRPO_POOL, grpoEnvSchema } from '../../workers/config/grpo';
import { localRlEnvSchema } from '../../workers/config/local-rl';
import { ORCHESTRATOR_POOL, orchestratorEnvSchema } from '../../workers/config/orchestrator';
import { ROLLOUT_POOL, rolloutEnvSchema } from '../../workers/config/rollout';
import { setupEnvSchema } from '../../workers/config/setup';
import { poolEnvSchema, workerProcessEnvSchema, type PoolDefaults } from '../../workers/pool';

const doc = readFileSync(path.join(__dirname, '..', '..', 'docs', 'configuration.md'), 'utf8');

/** The rows of the table after `<!-- table: name -->`, as cells without their backticks. */
function table(name: string): string[][] {
  const start = doc.indexOf(`<!-- table: ${name} -->`);
  if (start < 0) throw new Error(`docs/configuration.md has no table "${name}"`);
  const lines = doc.slice(start).split('\n').slice(1);
  const rows: string[][] = [];
  for (const line of lines.slice(2)) {
    if (!line.startsWith('|')) break;
    rows.push(line.split('|').slice(1, -1).map((c) => c.trim()));
  }
  return rows;
}

interface Field {
  default?: unknown;
  required: boolean;
}

/** Each variable of a schema: its default and whether it is required (zod's JSON Schema of the input). */
function fields(schema: z.ZodType): Record<string, Field> {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as { properties: Record<string, { default?: unknown }>; required?: string[] };
  return Object.fromEntries(Object.entries(json.properties).map(([k, v]) => [k, { ...('default' in v ? { default: v.default } : {}), required: (json.required ?? []).includes(k) }]));
}

const unquote = (cell: string): string => cell.replace(/^`|`$/g, '');

function expectDefault(name: string, f: Field | undefined, cell: string): void {
  if (!f) return;
  if (f.required) expect({ name, cell }).toEqual({ name, cell: '(required)' });
  else if (f.default !== undefined) expect({ name, cell }).toEqual({ name, cell: `\`${String(f.default)}\`` });
  else expect({ name, cell: cell.startsWith('`') }).toEqual({ name, cell: false });
}

const ROLE_TABLES: [string, z.ZodType][] = [
  ['temporal', temporalEnvSchema],
  ['worker-process', workerProcessEnvSchema],
  ['orchestrator', orchestratorEnvSchema],
  ['api', apiEnvSchema],
  ['rollout', rolloutEnvSchema],
  ['grpo', grpoEnvSchema],
  ['local-rl', localRlEnvSchema],
  ['setup', setupEnvSchema],
];

describe('docs/configuration.md', () => {
  it.each(ROLE_TABLES)('the %s table lists exactly its schema, with its defaults', (name, schema) => {
    const rows = table(name);
    const want = fields(schema);
    expect(rows.map((r) => unquote(r[0]!)).sort()).toEqual(Object.keys(want).sort());
    for (const [variable, dflt, meaning] of rows) {
      expect({ variable, meaning: Boolean(meaning) }).toEqual({ variable, meaning: true });
      expectDefault(unquote(variable!), want[unquote(variable!)], dflt!);
    }
  });

  it('the pool table lists every pool variable with each role\'s default', () => {
    const pools: [string, PoolDefaults][] = [
      ['ORCHESTRATOR', ORCHESTRATOR_POOL],
      ['ROLLOUT', ROLLOUT_POOL],
      ['GRPO', GRPO_POOL],
    ];
    const rows = table('pool');
    pools.forEach(([prefix, defaults], column) => {
      const want = fields(poolEnvSchema(prefix, defaults));
      const suffix = (v: string): string => v.slice(`FORGE_${prefix}_`.length);
      expect(rows.map((r) => unquote(r[0]!)).sort()).toEqual(Object.keys(want).map(suffix).sort());
      for (const row of rows) expectDefault(`FORGE_${prefix}_${unquote(row[0]!)}`, want[`FORGE_${prefix}_${unquote(row[0]!)}`], row[1 + column]!);
    });
  });

  it('README links it', () => {
    expect(readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8')).toContain('docs/configuration.md');
  });
});
