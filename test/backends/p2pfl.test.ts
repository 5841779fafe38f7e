/**
 * The p2pfl backend: a real P2PFL experiment (two nodes, FedAvg) finetuning the tiny base model on tiny generated
 * data in a local git repo, no hub download, whose P2PFL web logger reports to the orchestrator API
 * (GET /jobs/:id/p2pfl). Needs .tools/p2pfl-venv (scripts/bootstrap.sh); without it the test says why and skips.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { P2pflBackend } from '../../activities/backends/p2pfl/p2pfl';
import type { DeploymentStatus } from '../../activities/backends/types';
import { parseConfig, type P2pflBackendConfig } from '../../common/config';
import { p2pflWebKey } from '../../common/p2pfl-web-key';
import { trainingJobSpecSchema } from '../../jobspec/schema';
import { makeSignedSpec, signedOf } from '../jobspec/fixtures';
import { http, startApi, type ApiHarness } from '../api/harness';
import { testConfig } from '../helpers/forge';
import { p2pflMissing } from '../helpers/p2pfl';
import { initTinyModel, requireTrainer } from '../trainer/helpers';

interface WebRecords {
  nodes: { attempt: number; address: string }[];
  logs: { node: string; level: string; message: string }[];
  metrics: {
    local: { node: string; metric_name: string; exp_id: string; round: number; step: number; value: number }[];
    global: { node: string; metric_name: string; value: number }[];
  };
}

const why = p2pflMissing();
if (why) console.warn(`p2pfl backend test skipped: ${why}`);
const maybe = why ? test.skip : test;

function dataRepo(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'p2pfl-data-'));
  mkdirSync(path.join(dir, 'datasets', 'file-edit'), { recursive: true });
  const lines = Array.from({ length: 40 }, (_, i) => JSON.stringify({ prompt: `reverse ${i}abc`, completion: `cba${i}` }));
  writeFileSync(path.join(dir, 'datasets', 'file-edit', 'train.jsonl'), `${lines.join('\n')}\n`);
  const git = (...args: string[]): void => void execFileSync('git', ['-c', 'user.email=t@t', '-c', 'user.name=t', ...args], { cwd: dir, stdio: 'ignore' });
  git('init', '-q', '-b', 'main');
  git('add', '-A');
  git('commit', '-qm', 'data');
  return `file://${dir}`;
}

function config(webLoggerUrl: string): P2pflBackendConfig {
  const c = parseConfig({ backends: { fed: { kind: 'p2pfl', nodes: 2, rounds: 1, hourly_usd: 0.5, poll_interval_ms: 100, web_logger_url: webLoggerUrl } } }).backends.fed;
  if (c?.kind !== 'p2pfl') throw new Error('not a p2pfl config');
  return c;
}

const home = mkdtempSync(path.join(os.tmpdir(), 'p2pfl-home-'));
let api: ApiHarness | undefined;
beforeAll(async () => {
  // The orchestrator API on the same FORGE_HOME as the backend (they share the web-logger key secret).
  if (!why) api = await startApi({ taskQueue: 'test-p2pfl-backend', config: testConfig({ local: { trainers: {} } }), home, worker: false });
});
afterAll(async () => api?.stop());

maybe('a federated finetune of two P2PFL nodes: progress, its metrics through the web logger, the aggregated model as the job outputs', async () => {
  const backend = new P2pflBackend('fed', config(api!.url), home, { closeGraceMs: 2000 });
  expect(await backend.health()).toMatchObject({ ok: true, detail: expect.stringMatching(/^p2pfl 0\.4\.4 \(torch 2\.13\.0\+cpu\) .*; 2 nodes, 1 rounds, memory$/) });

  requireTrainer();
  const raw = makeSignedSpec({
    base_model: { name: initTinyModel(path.join(home, 'tiny-base')), source: 'local', revision: 'main' },
    data: { repo: dataRepo() },
    objective: { max_steps: 12 },
    hyperparameters: { learning_rate: 3e-3, batch_size: 8 },
    backend: { provider: 'fed' },
  });
  const spec = trainingJobSpecSchema.parse(raw);
  const ref = await backend.submit(signedOf(raw), 1);
  expect(ref.kind).toBe('p2pfl');

  let s: DeploymentStatus = await backend.status(ref);
  const deadline = Date.now() + 90_000;
  while (s.state === 'RUNNING' || s.state === 'PENDING') {
    if (Date.now() > deadline) throw new Error('the experiment did not end in 90 s');
    await backend.waitForChange(ref, 1000);
    s = await backend.status(ref);
  }
  const logs = await backend.logs(ref);
  expect({ state: s.state, stderr: logs.lines.filter((l) => l.stream === 'stderr').slice(-5) }).toMatchObject({ state: 'SUCCEEDED' });
  expect(s.progress).toMatchObject({ step: 12, maxSteps: 12 });
  expect(s.costUsd).toBeGreaterThan(0);

  const out = mkdtempSync(path.join(os.tmpdir(), 'p2pfl-out-'));
  // A Hugging Face model directory (the eval suite and `forge-trainer serve` load it like any finetune's).
  expect(await backend.collectArtifacts(ref, out)).toEqual(expect.arrayContaining(['config.json', 'metrics.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'training_log.jsonl']));
  expect(JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'))).toMatchObject({ model_type: 'llama' });
  const metrics = JSON.parse(readFileSync(path.join(out, 'metrics.json'), 'utf8')) as {
    federation: object;
    initial_val_loss: number;
    val_loss: number;
    val_loss_per_node: Record<string, number>;
    train_examples: number;
    web_logger: { connected: boolean; ok: number; failed: number };
  };
  expect(metrics.federation).toEqual({ framework: 'p2pfl', version: '0.4.4', nodes: 2, sites: 1, site: 0, rounds: 1, epochs: 1, steps_per_round: 12, protocol: 'memory', aggregator: 'FedAvg' });
  expect(Object.keys(metrics.val_loss_per_node)).toEqual(['forge-node-0', 'forge-node-1']);
  expect(metrics.val_loss).toBeGreaterThan(0);
  expect(metrics.train_examples).toBe(36); // 40 records, 10% held out
  expect(metrics.web_logger).toEqual({ connected: true, ok: expect.any(Number), failed: 0 });
  const rounds = readFileSync(path.join(out, 'training_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { event: string; node?: string });
  expect(rounds.filter((e) => e.event === 'round').map((e) => e.node).sort()).toEqual(['forge-node-0', 'forge-node-1']);

  // model.safetensors: an 8-byte header length, a JSON header, then the tensors' bytes.
  const st = readFileSync(path.join(out, 'model.safetensors'));
  const headerLen = Number(st.readBigUInt64LE(0));
  const header = JSON.parse(st.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  expect(header['model.embed_tokens.weight']).toMatchObject({ dtype: 'F32', shape: [257, 96] });
  const last = Math.max(...Object.entries(header).filter(([k]) => k !== '__metadata__').map(([, v]) => v.data_offsets[1]));
  expect(st.length).toBe(8 + headerLen + last);

  // What P2PFL's own web logger sent to the API's endpoints during the run, with the key the backend made.
  const web = await http(api!.url, 'GET', `/jobs/${spec.job_id}/p2pfl`);
  expect(web.status).toBe(200);
  const sent = web.json as WebRecords;
  expect(sent.nodes.map((n) => `${n.attempt}/${n.address}`).sort()).toEqual(['1/forge-node-0', '1/forge-node-1']);
  // Every optimizer step of each node, as a local metric: 12 steps in the one round.
  for (const node of ['forge-node-0', 'forge-node-1']) {
    const steps = sent.metrics.local.filter((m) => m.node === node && m.metric_name === 'train_loss');
    expect(steps.map((m) => m.step)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(steps.every((m) => Number.isFinite(m.value) && m.value > 0 && m.round === 0 && /^experiment-/.test(m.exp_id))).toBe(true);
  }
  // The learner's evaluations, as round metrics; the nodes' INFO lines, as logs.
  expect(new Set(sent.metrics.global.filter((m) => m.metric_name === 'test_loss').map((m) => m.node))).toEqual(new Set(['forge-node-0', 'forge-node-1']));
  expect(sent.logs.some((l) => l.level === 'INFO' && /Training finished/.test(l.message))).toBe(true);
  // The key went only to the experiment's env: not into the deployment record or its logs.
  const key = p2pflWebKey(home, spec.job_id, 1);
  expect(JSON.stringify(ref)).not.toContain(key);
  expect(JSON.stringify(await backend.logs(ref))).not.toContain(key);
  await backend.close(ref);
}, 120_000);
