/**
 * The forge agent's container side, as data: the POSIX sh script that wraps the trainer in a remote container, the
 * env it needs (the trainer contract of docs/architecture.md §6 plus the agent's own), and the path token. The script
 * and its Python are real files in trainer/agent/, read once; apart from that the SDL generator and cf-sdl use this
 * without any I/O. See remote-agent.ts for what the agent serves and how it is read.
 */
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../../common/paths';
import { shippedSpecText, type ShippedSpec } from '../../../jobspec/signed-spec';
import type { AgentTls } from './agent-tls';
import { trainerContractEnv } from '../trainer-contract';
import type { EvalRunInputs } from '../types';

/**
 * The agent's files (trainer/agent/): agent.sh with each {{name.py}} replaced by that Python file, single-quoted for
 * sh. A file's leading comment lines are its documentation and are not shipped: the rest is, byte for byte, in every
 * deployment's command and so in every Akash manifest (a replica rebuilding one must get the same version).
 */
export function loadAgentScript(dir = path.join(repoRoot(), 'trainer', 'agent')): string {
  const shipped = (name: string): string => {
    let text: string;
    try {
      text = readFileSync(path.join(dir, name), 'utf8');
    } catch (err) {
      throw new Error(`the forge agent's ${name} is missing (${(err as Error).message}): the orchestrator needs trainer/agent/ next to dist/`);
    }
    const lines = text.split('\n');
    const first = lines.findIndex((l) => !l.startsWith('#'));
    return lines.slice(first).join('\n').replace(/\n$/, '');
  };
  return `${shipped('agent.sh').replace(/\{\{([a-z]+\.py)\}\}/g, (_, name: string) => {
    const code = shipped(name);
    if (code.includes("'")) throw new Error(`trainer/agent/${name} contains a single quote: agent.sh single-quotes it for sh`);
    return code;
  })}\n`;
}

let agentScript: string | undefined;

/** The POSIX sh script of the agent ("$@" is the trainer command); read once. */
export function agentScriptText(): string {
  agentScript ??= loadAgentScript();
  return agentScript;
}

/** The container command that runs `trainer` under the agent. */
export function agentCommand(trainer: readonly string[]): { command: string[]; args: string[] } {
  return { command: ['sh', '-c'], args: [agentScriptText(), 'forge-agent', ...trainer] };
}

/** The path token: unguessable without the backend's credential, the same on every worker. */
export function agentToken(credential: string, backend: string, jobId: string, attempt: number): string {
  return createHmac('sha256', credential).update(`forge-agent\n${backend}\n${jobId}\n${attempt}`).digest('hex').slice(0, 40);
}

/**
 * The trainer contract's env (docs/architecture.md §6) inside the container, plus what the agent needs. FORGE_SPEC and
 * FORGE_OUTPUT_DIR are set by the agent itself (under its token folder).
 */
export function agentEnv(o: {
  signed: ShippedSpec;
  attempt: number;
  token: string;
  port: number;
  operatorEnv: Record<string, string>;
  /** TLS to the agent (agent-tls.ts): its certificate and key. */
  tls?: AgentTls;
  /** An eval attempt's inputs (trainer-contract.ts). */
  evalRun?: EvalRunInputs;
}): Record<string, string> {
  const { spec } = o.signed;
  return {
    ...o.operatorEnv,
    ...trainerContractEnv(spec, o.attempt, o.evalRun),
    FORGE_AGENT_TOKEN: o.token,
    FORGE_AGENT_PORT: String(o.port),
    FORGE_SPEC_B64: Buffer.from(shippedSpecText(o.signed)).toString('base64'),
    ...(o.tls && { FORGE_AGENT_TLS_CERT_B64: Buffer.from(o.tls.cert).toString('base64'), FORGE_AGENT_TLS_KEY_B64: Buffer.from(o.tls.key).toString('base64') }),
  };
}


/** Single-quotes a word for sh. */
export function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * One shell line that runs `trainer` under the agent, for platforms whose container command is fixed by a template
 * (Prime Intellect): the template's start command is `sh -c 'eval "$FORGE_AGENT_BOOT"'` and this goes in the env.
 */
export function agentBootLine(trainer: readonly string[]): string {
  return ['sh', '-c', agentScriptText(), 'forge-agent', ...trainer].map(shellQuote).join(' ');
}

/** The template start command that pairs with agentBootLine. */
export const AGENT_BOOT_COMMAND = `sh -c 'eval "$FORGE_AGENT_BOOT"'`;
