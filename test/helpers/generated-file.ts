import { readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const ROOT = join(__dirname, '..', '..');

/**
 * A generated file that is committed (a JSON Schema): it must equal `value` as JSON, generated now. `UPDATE_SCHEMA=1`
 * rewrites it; the file is written here and only here, so the modules that generate it stay free of I/O.
 */
export function expectCommittedAsGenerated(file: string, value: unknown, source: string, testPath: string): void {
  const generated = `${JSON.stringify(value, null, 2)}\n`;
  if (process.env.UPDATE_SCHEMA === '1') writeFileSync(file, generated);
  if (readFileSync(file, 'utf8') !== generated) {
    throw new Error(
      `${relative(ROOT, file)} is out of date with ${source}; regenerate it with\n` +
        `  UPDATE_SCHEMA=1 npx jest ${relative(ROOT, testPath).replace(/\.test\.ts$/, '')}\nand commit the result.`,
    );
  }
}
