/** A cf-* command: its options, --help, argument parsing (node:util parseArgs) and the run that ends in an exit code. */
import { parseArgs } from 'node:util';
import { ApiClient } from './api-client';
import { CliError, EXIT, EXIT_HELP, type ExitCode } from './exit';
import { Output } from './output';

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** Placeholder for a string option's value in --help, e.g. FILE. */
  value?: string;
  description: string;
}

export interface CommandSpec {
  name: string;
  summary: string;
  /** Positional part of the usage line, e.g. `<spec.json>`. */
  args: string;
  positionals: { min: number; max: number };
  options: Record<string, OptionSpec>;
  /** Whether the command talks to the API (adds --api). */
  usesApi: boolean;
  exitCodes: readonly ExitCode[];
  details?: string;
}

export type OptionValues = Record<string, string | boolean | undefined>;

export interface CliContext {
  values: OptionValues;
  positionals: string[];
  json: boolean;
  out: Output;
  api(): ApiClient;
}

const COMMON_OPTIONS: Record<string, OptionSpec> = {
  json: { type: 'boolean', description: 'machine-readable JSON on stdout (one object, or one per line with --watch)' },
  help: { type: 'boolean', short: 'h', description: 'this help' },
};
const API_OPTION: Record<string, OptionSpec> = {
  api: { type: 'string', value: 'URL', description: 'orchestrator API (default $FORGE_API_URL, else http://127.0.0.1:$FORGE_API_PORT, port 8080)' },
  key: { type: 'string', short: 'k', value: 'FILE', description: 'owner key that signs the API requests (default $FORGE_HOME/keys/owner.json, when it exists)' },
};

function allOptions(spec: CommandSpec): Record<string, OptionSpec> {
  // A command's own --key (the owner key it signs with) is also the key its requests are signed with.
  const api = spec.usesApi ? Object.fromEntries(Object.entries(API_OPTION).filter(([name]) => !(name in spec.options))) : {};
  return { ...spec.options, ...api, ...COMMON_OPTIONS };
}

export function helpText(spec: CommandSpec): string {
  const options = Object.entries(allOptions(spec)).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : ''}`;
    return `  ${flag.padEnd(30)} ${o.description}`;
  });
  const codes = spec.exitCodes.map((c) => `  ${c}  ${EXIT_HELP[c]}`);
  const env = spec.usesApi
    ? '\nEnvironment: FORGE_API_URL, FORGE_API_PORT, FORGE_API_TOKEN (the operator\'s token, sent as a bearer token).\n' +
      'Requests are signed with the owner key (RFC 9421): an API with FORGE_API_AUTH=owners shows each owner their own jobs.\n'
    : '';
  return `${spec.name} — ${spec.summary}\n\nUsage: ${spec.name} ${spec.args}\n\nOptions:\n${options.join('\n')}\n${spec.details ? `\n${spec.details}\n` : ''}${env}\nExit codes:\n${codes.join('\n')}\n`;
}

/** Parses argv, handles --help, runs the command and exits with its code; errors become a message and a code. */
export async function runCli(spec: CommandSpec, handler: (ctx: CliContext) => Promise<ExitCode>, argv = process.argv.slice(2)): Promise<never> {
  const out = new Output(argv.includes('--json'));
  let code: ExitCode;
  try {
    const options = Object.fromEntries(
      Object.entries(allOptions(spec)).map(([name, o]) => [name, { type: o.type, ...(o.short ? { short: o.short } : {}) }]),
    );
    let parsed;
    try {
      parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    } catch (err) {
      throw new CliError(EXIT.USAGE, `${(err as Error).message}\nRun ${spec.name} --help for usage.`);
    }
    const { values, positionals } = parsed;
    if (values.help) {
      process.stdout.write(helpText(spec));
      process.exit(EXIT.OK);
    }
    if (positionals.length < spec.positionals.min || positionals.length > spec.positionals.max) {
      throw new CliError(EXIT.USAGE, `usage: ${spec.name} ${spec.args}\nRun ${spec.name} --help for more.`);
    }
    let client: ApiClient | undefined;
    code = await handler({
      values,
      positionals,
      json: values.json === true,
      out,
      api: () => (client ??= ApiClient.fromEnv(typeof values.api === 'string' ? values.api : undefined, typeof values.key === 'string' ? values.key : undefined)),
    });
  } catch (err) {
    if (err instanceof CliError) {
      out.error(err.message);
      code = err.code;
    } else {
      out.error(`unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      code = EXIT.UNAVAILABLE;
    }
  }
  // Let stdout drain before exiting (large --json output to a pipe).
  await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
  process.exit(code);
}
