/**
 * The P2PFL experiment's gRPC mode across two processes on this machine: two sites of one federated finetune of the
 * tiny base model, one node each, each with its own share of the job's data, talking P2PFL over gRPC on loopback.
 * Site 0 listens on a fixed address and starts the learning once site 1 has joined; both end with the same FedAvg
 * model, whose held-out loss is below the base model's. Needs .tools/p2pfl-venv (scripts/bootstrap.sh); without it
 * the test says why and skips.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { p2pflDefaultCommand } from '../../common/config';
import { makeSignedSpec } from '../jobspec/fixtures';
import { tempDir } from '../helpers/forge';
import { p2pflMissing } from '../helpers/p2pfl';
import { TRAINER_ENV, initTinyModel, makeDataRepo, readEvents, requireTrainer, reverseExamples } from '../trainer/helpers';

const [python, ...args] = p2pflDefaultCommand();
const why = p2pflMissing();
if (why) console.warn(`p2pfl gRPC test skipped: ${why}`);
const maybe = why ? test.skip : test;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

interface Site {
  code: number | null;
  stderr: string;
  out: string;
}

const SITE_TIMEOUT_MS = 200_000;

function runSite(dir: string, env: Record<string, string>): Promise<Site> {
  const out = path.join(dir, 'out');
  mkdirSync(out, { recursive: true });
  const child = spawn(python!, args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, ...TRAINER_ENV, ...env, FORGE_OUTPUT_DIR: out }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stdout.on('data', () => undefined);
  child.stderr.on('data', (d: Buffer) => void (stderr += d.toString('utf8')));
  // A site still running near the test's own timeout is stopped, so the failure shows its stderr, not only a timeout.
  const stop = setTimeout(() => child.kill('SIGKILL'), SITE_TIMEOUT_MS);
  return new Promise((resolve) =>
    child.on('exit', (code) => {
      clearTimeout(stop);
      resolve({ code, stderr: stderr.slice(-3000), out });
    }),
  );
}

interface Metrics {
  initial_val_loss: number;
  val_loss: number;
  steps: number;
  share_examples: Record<string, number>;
  federation: Record<string, unknown>;
}

maybe('two sites, one process each, federate over gRPC: each trains its share, both end with the FedAvg model', async () => {
  requireTrainer();
  const home = tempDir('p2pfl-grpc-');
  const model = initTinyModel(path.join(home, 'tiny-base'));
  const data = makeDataRepo(path.join(home, 'data'), { 'datasets/reverse/train.jsonl': reverseExamples(120) });
  const spec = makeSignedSpec({
    base_model: { name: model, source: 'local', revision: 'main' },
    objective: { task_types: ['toy'], max_steps: 24 },
    data: { repo: data, branch: 'main', path: 'datasets/reverse/', validation_split: 0.1 },
    hyperparameters: { learning_rate: 3e-3, batch_size: 8, gradient_accumulation_steps: 1, warmup_steps: 2, weight_decay: 0.01 },
  });
  const specFile = path.join(home, 'spec.json');
  writeFileSync(specFile, JSON.stringify(spec));
  const port = await freePort();
  const common = { FORGE_SPEC: specFile, DATA_REPO: data, DATA_BRANCH: 'main', DATA_PATH: 'datasets/reverse/', FORGE_ATTEMPT: '1', P2PFL_PROTOCOL: 'grpc', P2PFL_NODES: '1', P2PFL_ROUNDS: '2', P2PFL_SITES: '2' };
  const [a, b] = await Promise.all([
    runSite(path.join(home, 'a'), { ...common, P2PFL_SITE: '0', P2PFL_ADDRESS: `127.0.0.1:${port}`, P2PFL_WAIT_PEERS: '1' }),
    runSite(path.join(home, 'b'), { ...common, P2PFL_SITE: '1', P2PFL_PEERS: `127.0.0.1:${port}`, P2PFL_START: '0' }),
  ]);
  expect({ code: a.code, stderr: a.code === 0 ? '' : a.stderr }).toEqual({ code: 0, stderr: '' });
  expect({ code: b.code, stderr: b.code === 0 ? '' : b.stderr }).toEqual({ code: 0, stderr: '' });

  const metrics = [a, b].map((s) => JSON.parse(readFileSync(path.join(s.out, 'metrics.json'), 'utf8')) as Metrics);
  const [ma, mb] = metrics as [Metrics, Metrics];
  expect(ma.federation).toMatchObject({ framework: 'p2pfl', protocol: 'grpc', nodes: 1, sites: 2, site: 0, rounds: 2, steps_per_round: 12, aggregator: 'FedAvg' });
  expect(mb.federation).toMatchObject({ protocol: 'grpc', sites: 2, site: 1 });
  // Disjoint shares of the 108 training examples (120 less 10% held out), one per site.
  const shares = [...Object.values(ma.share_examples), ...Object.values(mb.share_examples)];
  expect(shares.reduce((x, y) => x + y, 0)).toBe(108);
  expect(shares).toHaveLength(2);
  for (const m of metrics) {
    expect(m.steps).toBe(24);
    expect(m.val_loss).toBeLessThan(m.initial_val_loss);
  }
  // The same base, the same aggregated model at the end.
  expect(mb.initial_val_loss).toBeCloseTo(ma.initial_val_loss, 5);
  expect(mb.val_loss).toBeCloseTo(ma.val_loss, 4);
  // Each site's node trained both rounds (its `round` events in its training log).
  for (const s of [a, b]) {
    const rounds = readEvents(path.join(s.out, 'training_log.jsonl')).filter((e) => e.event === 'round');
    expect(rounds.map((e) => e.round)).toEqual([1, 2]);
  }
  for (const s of [a, b]) {
    expect(JSON.parse(readFileSync(path.join(s.out, 'config.json'), 'utf8'))).toMatchObject({ model_type: 'llama' });
    expect(readFileSync(path.join(s.out, 'tokenizer.json'), 'utf8').length).toBeGreaterThan(0);
  }
}, SITE_TIMEOUT_MS + 40_000);
