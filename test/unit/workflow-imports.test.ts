/**
 * The workflow sandbox evaluates every module that workflow code imports again for each new workflow, so what
 * workflows import decides both the first workflow task's latency (bench/lifecycle) and each cached workflow's
 * memory (bench/load). zod alone cost ~25 ms and ~1 MB per workflow: this walks the value imports from
 * workflows/index.ts and fails when any of them reaches a package that is not on the list below.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');
/** Packages workflow code may load (besides Temporal's own): small and pure. */
const ALLOWED = ['@noble/ed25519', '@noble/hashes', '@scure/base'];

/** Value imports and re-exports of a module (type-only ones are erased by the compiler and cost nothing). */
function valueImports(source: string): string[] {
  const out: string[] = [];
  const statement = /(?:^|\n)\s*(import|export)\s+(type\s+)?([^;'"]*?)\s*from\s*['"]([^'"]+)['"]/g;
  for (const m of source.matchAll(statement)) {
    if (m[2]) continue; // `import type …` / `export type …`
    const names = m[3] ?? '';
    // `import { type A, type B }` imports nothing at run time either.
    const braces = /^\{([^}]*)\}$/.exec(names.trim());
    if (braces && braces[1]!.split(',').every((n) => n.trim() === '' || n.trim().startsWith('type '))) continue;
    out.push(m[4]!);
  }
  for (const m of source.matchAll(/(?:^|\n)\s*import\s+['"]([^'"]+)['"]/g)) out.push(m[1]!);
  return out;
}

function resolveLocal(from: string, spec: string): string {
  const base = path.resolve(path.dirname(from), spec.replace(/\.js$/, ''));
  for (const file of [`${base}.ts`, path.join(base, 'index.ts')]) if (existsSync(file)) return file;
  throw new Error(`cannot resolve ${spec} from ${path.relative(ROOT, from)}`);
}

/** Every package reached from `entry`, with the chain of modules that reaches it. */
function packagesReached(entry: string): Map<string, string[]> {
  const reached = new Map<string, string[]>();
  const seen = new Set<string>();
  const walk = (file: string, chain: string[]): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const here = [...chain, path.relative(ROOT, file)];
    for (const spec of valueImports(readFileSync(file, 'utf8'))) {
      if (spec.startsWith('.')) walk(resolveLocal(file, spec), here);
      else if (!reached.has(spec)) reached.set(spec, here);
    }
  };
  walk(entry, []);
  return reached;
}

describe('workflow code imports', () => {
  it('reaches no package but Temporal and the small pure ones (no zod)', () => {
    const reached = packagesReached(path.join(ROOT, 'workflows', 'index.ts'));
    const foreign = [...reached].filter(([pkg]) => !pkg.startsWith('@temporalio/') && !ALLOWED.some((a) => pkg === a || pkg.startsWith(`${a}/`)));
    expect(foreign.map(([pkg, chain]) => `${pkg} via ${chain.join(' → ')}`)).toEqual([]);
  });

  it('finds a zod import when there is one (the walk itself works)', () => {
    const reached = packagesReached(path.join(ROOT, 'jobspec', 'parse.ts'));
    expect([...reached.keys()]).toContain('zod');
  });
});
