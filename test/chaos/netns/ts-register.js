/**
 * Lets a plain `node` process (one started inside a network namespace by the chaos suite) require the project's
 * TypeScript test fakes: .ts files are compiled with SWC on load, as Jest does.
 */
const { readFileSync } = require('node:fs');
const { transformSync } = require('@swc/core');

require.extensions['.ts'] = function compileTs(module, filename) {
  const { code } = transformSync(readFileSync(filename, 'utf8'), {
    filename,
    jsc: { target: 'es2022', parser: { syntax: 'typescript' } },
    module: { type: 'commonjs' },
  });
  module._compile(code, filename);
};
