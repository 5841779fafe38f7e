/**
 * The p2pfl backend: a real P2PFL experiment (two nodes, FedAvg) on tiny generated data in a local git repo, no
 * hub download. Needs .tools/p2pfl-venv (scripts/bootstrap.sh); without it the test says why and skips.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { P2pflBackend } from '../../activities/backends/p2pfl';
import type { DeploymentStatus } from '../../activities/backends/types';
import { p2pflDefaultCommand, parseConfig, type P2pflBackendConfig } from '../../common/config';
import { trainingJobSpecSchema } from '../../spec/schema';
import { makeSignedSpec } from '../spec/fixtures';

const [python] = p2pflDefaultCommand();
const probe = spawnSync(python!, ['-c', 'import p2pfl'], { encoding: 'utf8' });
const why = probe.error ? `${python} is missing (run npm run bootstrap)` : probe.status !== 0 ? `p2pfl does not import: ${probe.stderr.trim().split('\n').at(-1)}` : '';
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

function config(): P2pflBackendConfig {
  const c = parseConfig({ backends: { fed: { kind: 'p2pfl', nodes: 2, rounds: 1, hourly_usd: 0.5, poll_interval_ms: 100 } } }).backends.fed;
  if (c?.kind !== 'p2pfl') throw new Error('not a p2pfl config');
  return c;
}

maybe('a federated finetune of two P2PFL nodes: progress, then the aggregated model as the job outputs', async () => {
  const home = mkdtempSync(path.join(os.tmpdir(), 'p2pfl-home-'));
  const backend = new P2pflBackend('fed', config(), home, { closeGraceMs: 2000 });
  expect(await backend.health()).toMatchObject({ ok: true, detail: expect.stringMatching(/^p2pfl 0\.4\.4 \(torch 2\.13\.0\+cpu\) .*; 2 nodes, 1 rounds, memory$/) });

  const raw = makeSignedSpec({
    data: { repo: dataRepo() },
    objective: { max_steps: 12 },
    hyperparameters: { learning_rate: 0.01, batch_size: 16 },
    backend: { provider: 'fed' },
  });
  const spec = trainingJobSpecSchema.parse(raw);
  const ref = await backend.submit(spec, raw, 1);
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
  expect((await backend.collectArtifacts(ref, out)).sort()).toEqual(['config.json', 'metrics.json', 'model.safetensors', 'training_log.jsonl']);
  const cfg = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')) as { federation: object };
  expect(cfg.federation).toEqual({ framework: 'p2pfl', version: '0.4.4', nodes: 2, rounds: 1, epochs: 1, protocol: 'memory', aggregator: 'FedAvg' });
  const metrics = JSON.parse(readFileSync(path.join(out, 'metrics.json'), 'utf8')) as { eval_loss: number; eval_loss_per_node: Record<string, number>; records: number };
  expect(Object.keys(metrics.eval_loss_per_node)).toEqual(['forge-node-0', 'forge-node-1']);
  expect(metrics.eval_loss).toBeGreaterThan(0);
  expect(metrics.records).toBe(40);
  const rounds = readFileSync(path.join(out, 'training_log.jsonl'), 'utf8').trim().split('\n');
  expect(rounds.map((l) => (JSON.parse(l) as { node: string }).node).sort()).toEqual(['forge-node-0', 'forge-node-1']);

  // model.safetensors: an 8-byte header length, a JSON header, then the tensors' bytes.
  const st = readFileSync(path.join(out, 'model.safetensors'));
  const headerLen = Number(st.readBigUInt64LE(0));
  const header = JSON.parse(st.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  expect(header['embed.weight']).toMatchObject({ dtype: 'F32', shape: [256, 32] });
  const last = Math.max(...Object.entries(header).filter(([k]) => k !== '__metadata__').map(([, v]) => v.data_offsets[1]));
  expect(st.length).toBe(8 + headerLen + last);
  await backend.close(ref);
}, 120_000);
