#!/usr/bin/env node
/**
 * cf-sdl: the Akash SDL and manifest version the akash backend would deploy for a spec's first attempt — a dry run:
 * nothing is deployed, no network is used. Generated and validated exactly as the backend does (akash-sdl.ts).
 */
import { readFileSync } from 'node:fs';
import { hourlyBudget } from '../../activities/control/admission';
import { akashSdlOptions, buildSdl, SdlError } from '../../activities/backends/akash/akash-sdl';
import { agentToken } from '../../activities/backends/remote/remote-agent-script';
import { ourInstallationTag } from '../../activities/backends/installation';
import { OrchestratorKeyMissingError } from '../../common/orchestrator-key';
import { forgeHome } from '../../common/paths';
import { readSecret } from '../../activities/backends/remote/remote-state';
import { ConfigError, loadConfig, parseConfig, type AkashBackendConfig, type ForgeConfig } from '../../common/config';
import { formatSpecIssues, parseTrainingJobSpec } from '../../jobspec/parse';
import type { TrainingJobSpec } from '../../jobspec/schema';
import { CliError, EXIT } from './shared/exit';
import { runCli, type CommandSpec } from './shared/command';

export const spec: CommandSpec = {
  name: 'cf-sdl',
  summary: 'print the Akash SDL and manifest version a spec would be deployed with (dry run)',
  args: '<spec.json | -> [--config FILE] [--backend NAME] [--attempt N] [--exact]',
  positionals: { min: 1, max: 1 },
  usesApi: false,
  options: {
    config: { type: 'string', short: 'c', value: 'FILE', description: 'operator config (default $FORGE_CONFIG)' },
    backend: { type: 'string', short: 'b', value: 'NAME', description: 'the akash backend of the config (default: the spec’s provider if it is one, else the first)' },
    attempt: { type: 'string', value: 'N', description: 'attempt number (default 1)' },
    exact: { type: 'boolean', description: 'use the real agent token (reads the backend’s credential), so the manifest version is exactly the deployed one' },
  },
  details:
    'The spec must be complete (job_id, owner_did, created_at, signature_ed25519 — cf-submit-training signs it); its\n' +
    'signature is not checked. The SDL goes to stdout, followed by a "# manifest version:" comment line. The price cap\n' +
    'is the backend’s hourly_usd, lowered to max_cost_usd / max_hours as admission does. Without --exact the agent\n' +
    'token (FORGE_AGENT_TOKEN, derived from the backend’s credential) is a placeholder, so the manifest version differs\n' +
    'from the deployed one in that alone. The group name carries the installation tag of the orchestrator key\n' +
    '(FORGE_ORCHESTRATOR_KEY_FILE, default $FORGE_HOME/keys/orchestrator.json), which --exact requires. Without an akash backend in the config: USDC pricing at the budget’s cap.',
  exitCodes: [EXIT.OK, EXIT.USAGE],
};

const PLACEHOLDER_TOKEN = 'dry-run-agent-token';

/** The spec as the API would receive it (key order kept: it is the spec the container gets) and parsed. */
function readSpec(file: string): { raw: Record<string, unknown>; spec: TrainingJobSpec } {
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    throw new CliError(EXIT.USAGE, `cannot read ${file}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CliError(EXIT.USAGE, `${file} is not JSON: ${(err as Error).message}`);
  }
  const parsed = parseTrainingJobSpec(json);
  if (!parsed.ok) throw new CliError(EXIT.USAGE, `${file} is not a valid training-job-v1 spec:\n${formatSpecIssues(parsed.issues)}`);
  return { raw: json as Record<string, unknown>, spec: parsed.spec }; // an object: it parsed as a spec
}

function operatorConfig(file: string | undefined): ForgeConfig | undefined {
  try {
    if (file) return loadConfig({ FORGE_CONFIG: file });
    return process.env.FORGE_CONFIG ? loadConfig(process.env) : undefined;
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(EXIT.USAGE, err.message);
    throw err;
  }
}

/** The akash backend to dry-run: named, else the spec's provider when it is one, else the config's first. */
export function pickAkash(
  config: ForgeConfig | undefined,
  spec: TrainingJobSpec,
  name: string | undefined,
): { name: string; config: AkashBackendConfig; defaults: boolean } {
  const entries = Object.entries(config?.backends ?? {}).flatMap(([n, b]) => (b.kind === 'akash' ? [[n, b] as const] : []));
  if (name !== undefined) {
    const found = entries.find(([n]) => n === name);
    if (!found)
      throw new CliError(
        EXIT.USAGE,
        `no akash backend named "${name}" in the operator config (akash backends: ${entries.map(([n]) => n).join(', ') || 'none'})`,
      );
    return { name, config: found[1], defaults: false };
  }
  const chosen = entries.find(([n]) => n === spec.backend.provider) ?? entries[0];
  if (chosen) return { name: chosen[0], config: chosen[1], defaults: false };
  const cap = hourlyBudget(spec.backend.max_cost_usd, spec.resources.max_hours);
  const c = parseConfig({
    backends: { akash: { kind: 'akash', mode: 'console', denom: 'usdc', hourly_usd: cap > 0 ? cap : 1, console: { api_key: PLACEHOLDER_TOKEN } } },
  }).backends.akash;
  if (c?.kind !== 'akash') throw new Error('default akash config');
  return { name: 'akash', config: c, defaults: true };
}

async function credential(c: AkashBackendConfig, backend: string): Promise<string> {
  if (c.mode === 'chain') return readSecret(c.chain?.mnemonic, c.chain?.mnemonic_file, `backends.${backend}.chain.mnemonic`);
  return readSecret(c.console?.api_key, c.console?.api_key_file, `backends.${backend}.console.api_key`);
}

if (require.main === module) {
  void runCli(spec, async ({ values, positionals, out }) => {
    const { raw, spec: job } = readSpec(positionals[0]!);
    const config = operatorConfig(typeof values.config === 'string' ? values.config : undefined);
    const attempt = typeof values.attempt === 'string' ? Number(values.attempt) : 1;
    if (!Number.isInteger(attempt) || attempt < 1) throw new CliError(EXIT.USAGE, `--attempt must be a whole number >= 1, got ${String(values.attempt)}`);
    const picked = pickAkash(config, job, typeof values.backend === 'string' ? values.backend : undefined);
    if (picked.defaults) out.note('no akash backend in the operator config: USDC pricing, cap = max_cost_usd / max_hours');
    const budgetCap = config?.admission.budget === 'stop' ? Infinity : hourlyBudget(job.backend.max_cost_usd, job.resources.max_hours);
    const capUsd = Math.min(picked.config.hourly_usd, budgetCap);
    let token = PLACEHOLDER_TOKEN;
    if (values.exact === true) {
      try {
        token = agentToken(await credential(picked.config, picked.name), picked.name, job.job_id, attempt);
      } catch (err) {
        throw new CliError(EXIT.USAGE, `--exact: ${(err as Error).message}`);
      }
    }
    // The group's name carries this installation's tag (from the orchestrator key), as the backend's does.
    let groupTag: string | undefined;
    try {
      groupTag = ourInstallationTag(forgeHome());
    } catch (err) {
      if (!(err instanceof OrchestratorKeyMissingError)) throw err;
      if (values.exact === true) throw new CliError(EXIT.USAGE, `--exact: ${err.message}`);
      out.note('no orchestrator key here: the group name lacks the installation tag, so the manifest version differs in that too');
    }
    let built;
    try {
      const tagged = groupTag !== undefined && { groupTag };
      built = await buildSdl(job, akashSdlOptions(picked.config, { signed: { spec: job, raw }, attempt, token, capUsd, ...tagged }));
    } catch (err) {
      if (err instanceof SdlError) throw new CliError(EXIT.USAGE, `${picked.name}: ${err.message}`);
      throw err;
    }
    if (out.json) {
      out.data({
        backend: picked.name,
        attempt,
        cap_usd_hour: capUsd,
        exact: values.exact === true,
        manifest_version: built.manifestVersion,
        sdl: built.yaml,
      });
    } else {
      process.stdout.write(built.yaml);
      out.line(`# manifest version: ${built.manifestVersion}`);
      if (values.exact !== true) out.note('FORGE_AGENT_TOKEN is a placeholder (use --exact for the deployed manifest version)');
    }
    return EXIT.OK;
  });
}
