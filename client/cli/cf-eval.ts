#!/usr/bin/env node
/**
 * cf-eval: runs the standardized eval suite (evals/) against a model — a local model directory, served for the run
 * by the reference trainer's `serve`, or any OpenAI-compatible endpoint (vLLM...) — appends one row per task to
 * evals.jsonl and prints a summary per task type (docs/architecture.md §8).
 */
import { randomUUID } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { defaultSuiteDir, suiteTaskTypes } from '../../activities/eval-suite';
import { appendEvalRows, EvalRunError, runEvalSuite, summaryTable, type EvalTarget } from '../../activities/evals';
import { loadConfig } from '../../common/config';
import { CliError, EXIT } from './shared/exit';
import { runCli, type CommandSpec } from './shared/command';

export const spec: CommandSpec = {
  name: 'cf-eval',
  summary: 'evaluate a model on the standardized eval suite; rows to evals.jsonl, a summary on stdout',
  args: '--model DIR | --endpoint URL [--tasks all|TYPE,...] [--out FILE]',
  positionals: { min: 0, max: 0 },
  usesApi: false,
  options: {
    model: { type: 'string', short: 'm', value: 'DIR', description: 'a model directory (config.json, weights, tokenizer), served for the run' },
    endpoint: { type: 'string', value: 'URL', description: 'an OpenAI-compatible server (POST /v1/completions), e.g. vLLM' },
    'model-name': { type: 'string', value: 'NAME', description: 'model id to send to --endpoint (default: the first of its /v1/models)' },
    tasks: { type: 'string', short: 't', value: 'LIST', description: 'task types: all (default) or a comma-separated list, e.g. file-edit,vcs' },
    out: { type: 'string', short: 'o', value: 'FILE', description: 'evals.jsonl to append to (default $FORGE_EVALS_FILE, else ./evals.jsonl)' },
    'job-id': { type: 'string', value: 'ID', description: 'the job the model comes from (recorded in each row)' },
    'model-ref': { type: 'string', value: 'REF', description: 'how rows name the model (default: the directory or the URL)' },
    suite: { type: 'string', value: 'DIR', description: 'task files (default: the operator config’s, else evals/ of this install)' },
  },
  details: 'Greedy decoding (temperature 0, seed 0), one request per task; checkers are deterministic. Environment: FORGE_CONFIG (serve command and its env), FORGE_EVALS_FILE.',
  exitCodes: [EXIT.OK, EXIT.USAGE, EXIT.UNAVAILABLE],
};

const endpointSchema = z.url({ protocol: /^https?$/ });

if (require.main === module) {
  void runCli(spec, async ({ values, out }) => {
    const str = (k: string): string | undefined => (typeof values[k] === 'string' ? (values[k] as string) : undefined);
    const modelDir = str('model');
    const endpoint = str('endpoint');
    if ((modelDir === undefined) === (endpoint === undefined)) throw new CliError(EXIT.USAGE, 'give exactly one of --model DIR or --endpoint URL');
    let target: EvalTarget;
    if (modelDir !== undefined) {
      const dir = path.resolve(modelDir);
      if (!existsSync(path.join(dir, 'config.json')) || !statSync(dir).isDirectory()) throw new CliError(EXIT.USAGE, `--model ${modelDir}: not a model directory with a config.json`);
      target = { kind: 'dir', dir };
    } else {
      const url = endpointSchema.safeParse(endpoint);
      if (!url.success) throw new CliError(EXIT.USAGE, `--endpoint: not an http(s) URL: ${endpoint}`);
      target = { kind: 'endpoint', url: url.data };
    }
    let config;
    try {
      config = loadConfig().results.evals;
    } catch (err) {
      throw new CliError(EXIT.USAGE, (err as Error).message);
    }
    const suiteDir = path.resolve(str('suite') ?? config.suite_dir ?? defaultSuiteDir());
    const known = suiteTaskTypes(suiteDir);
    const tasksArg = str('tasks') ?? 'all';
    const taskTypes = tasksArg === 'all' ? 'all' : tasksArg.split(',').map((t) => t.trim()).filter(Boolean);
    if (taskTypes !== 'all') {
      const unknown = taskTypes.filter((t) => !known.includes(t));
      if (unknown.length || taskTypes.length === 0) throw new CliError(EXIT.USAGE, `--tasks: unknown task type(s) ${unknown.join(', ')}; the suite has: ${known.join(', ')}`);
    }
    const file = path.resolve(str('out') ?? process.env.FORGE_EVALS_FILE ?? 'evals.jsonl');
    const modelRef = str('model-ref') ?? (target.kind === 'dir' ? target.dir : target.url);
    const modelName = str('model-name');
    let done = 0;
    let result;
    try {
      result = await runEvalSuite({
        target,
        taskTypes,
        suiteDir,
        modelRef,
        jobId: str('job-id') ?? null,
        evalId: `cf-eval-${randomUUID()}`,
        settings: config,
        // Run by a user for themselves, not by the orchestrator for a submitter: the server keeps the user's environment.
        envPassthrough: Object.keys(process.env),
        ...(modelName ? { modelName } : {}),
        onTask: (row) => {
          done += 1;
          // A progress line a terminal overwrites; piped output gets only the summary.
          if (!out.json && out.tty) out.transient(`  ${done} tasks  ${row.task_type}/${row.task_id} ${row.success ? 'passed' : 'failed'}`);
        },
      });
    } catch (err) {
      if (err instanceof EvalRunError) throw new CliError(err.permanent ? EXIT.USAGE : EXIT.UNAVAILABLE, err.message);
      throw err;
    }
    await appendEvalRows(file, result.rows, false);
    if (out.json) out.data({ model_ref: modelRef, evals_file: file, rows: result.rows.length, summaries: result.summaries });
    else {
      out.line(summaryTable(result.summaries));
      out.line(`${result.rows.length} row(s) appended to ${file}`);
    }
    return EXIT.OK;
  });
}
