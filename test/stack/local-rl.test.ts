/**
 * RL on the embedded stack, as a new user meets it: start-stack (what `npm start` runs) on a fresh FORGE_HOME serves
 * forge-rollout and forge-grpo on this machine, light while no rl job runs (the RL roles' RSS, model processes
 * included, ≤ 150 MiB); `npm run demo:rl` (client/demo/rl-tiny.ts) follows an rl job on it to COMPLETED, showing its
 * steps; and an rl spec submitted with `cf-submit-training --watch` completes, the reward of its last steps above
 * its first, the policy committed and evaluated. FORGE_LOCAL_RL=0: no RL roles.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { runRlDemo, RL_EXAMPLE_SPEC } from '../../client/demo/rl-tiny';
import { demoPaths } from '../../client/demo/prepare';
import { readSteps } from '../rl/harness';
import { requireBuilt, runCommand } from '../helpers/cli';
import { tempDir } from '../helpers/forge';
import { freePort } from '../helpers/ports';

const ROOT = path.resolve(__dirname, '..', '..');
/** temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY */
const ACTIVITY = 2;

interface Stack {
  proc: ChildProcess;
  output: () => string;
  temporal: string;
  api: string;
}

const stacks: ChildProcess[] = [];

async function startStack(home: string, env: Record<string, string> = {}): Promise<Stack> {
  const [port, uiPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  let output = '';
  const proc = spawn(process.execPath, [path.join(ROOT, 'dist', 'infra', 'start-stack.js')], {
    cwd: ROOT,
    detached: true, // its own process group: afterAll kills whatever is left of it at once
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      FORGE_EMBEDDED: '',
      FORGE_CONFIG: '',
      FORGE_HOME: home,
      FORGE_TEMPORAL_PORT: String(port),
      FORGE_UI_PORT: String(uiPort),
      FORGE_API_PORT: String(apiPort),
      TEMPORAL_ADDRESS: '',
      FORGE_WORKER_LOG_LEVEL: 'WARN',
      ...env,
    },
  });
  stacks.push(proc);
  proc.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const deadline = Date.now() + 90_000;
  while (!output.includes('[forge] ready')) {
    if (proc.exitCode !== null) throw new Error(`start-stack exited ${proc.exitCode}:\n${output}`);
    if (Date.now() > deadline) throw new Error(`start-stack not ready:\n${output}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return { proc, output: () => output, temporal: `127.0.0.1:${port}`, api: `http://127.0.0.1:${apiPort}` };
}

async function stopStack(s: Stack): Promise<void> {
  const exited = new Promise<void>((resolve) => s.proc.once('exit', () => resolve()));
  process.kill(-s.proc.pid!, 'SIGINT');
  await exited;
}

afterAll(() => {
  for (const p of stacks) {
    try {
      process.kill(-p.pid!, 'SIGKILL');
    } catch {
      // stopped already
    }
  }
});

async function activityPollers(connection: Connection, taskQueue: string): Promise<number> {
  const q = await connection.workflowService.describeTaskQueue({ namespace: 'default', taskQueue: { name: taskQueue }, taskQueueType: ACTIVITY });
  return (q.pollers ?? []).length;
}

/** Resident memory of a process and all its descendants, in MiB. */
function treeRssMiB(pid: number): number {
  const rss = (p: number): number => {
    try {
      return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0) / 1024;
    } catch {
      return 0;
    }
  };
  let children: number[] = [];
  try {
    children = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    // none
  }
  return rss(pid) + children.reduce((n, c) => n + treeRssMiB(c), 0);
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

test('npm start serves RL: demo:rl and cf-submit-training --watch run rl jobs to COMPLETED, the reward rising', async () => {
  requireBuilt(['cf-submit-training']);
  const home = tempDir('forge-local-rl-');
  // A short idle time: the inference server stops (and the RL process starts afresh) between the two jobs.
  const stack = await startStack(home, { FORGE_LOCAL_RL_IDLE_SECONDS: '5' });
  const pid = Number(/RL: .*\(CPU; pid (\d+)/.exec(stack.output())?.[1]);
  expect(pid).toBeGreaterThan(0);
  const connection = await Connection.connect({ address: stack.temporal });
  try {
    const client = new Client({ connection });
    // Both RL queues are polled from the start; idle, the RL roles are light (no model process yet).
    const deadline = Date.now() + 30_000;
    while ((await activityPollers(connection, 'forge-rollout')) === 0 || (await activityPollers(connection, 'forge-grpo')) === 0) {
      if (Date.now() > deadline) throw new Error(`no RL pollers:\n${stack.output()}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    const idleRss = treeRssMiB(pid);
    console.log(`RL roles idle: ${idleRss.toFixed(0)} MiB RSS (pid ${pid} and its children)`);
    expect(idleRss).toBeLessThanOrEqual(150);

    // demo:rl: prepares FORGE_HOME, signs examples/rl-tiny.json, shows the steps live, ends with eval and commit.
    const lines: string[] = [];
    const demo = await runRlDemo({ home, client, taskQueue: 'forge-orchestrator', log: (l) => lines.push(l), maxSteps: 3, pollMs: 100 });
    const text = lines.join('\n');
    expect({ state: demo.status.state, error: demo.status.last_error, text }).toMatchObject({ state: 'COMPLETED', error: null });
    expect(demo.status.job_type).toBe('rl');
    expect(text).toMatch(/grpo +step +\d\/3 +reward \d\.\d{3} +staleness \d\.\d\d \(max \d\) +trainer idle \d+%/);
    expect(text).toMatch(/COMPLETED +evaluated: toy/);
    expect(text).toMatch(/eval toy: \d+\/20 /);
    expect(text).toMatch(/artifacts: file:\/\/.*demo\/models jobs\/[0-9a-f-]{36} @ [0-9a-f]{12}/);
    expect(text).toContain(`models/job-${demo.jobId}/`);

    // An rl spec submitted through the API with cf-submit-training --watch, the demo owner's key signing it.
    const spec = JSON.parse(readFileSync(RL_EXAMPLE_SPEC, 'utf8').replaceAll('${FORGE_HOME}', home)) as Record<string, unknown>;
    delete spec.job_id;
    delete spec.owner_did;
    delete spec.created_at;
    delete spec.signature_ed25519;
    const STEPS = 12;
    spec.objective = { ...(spec.objective as object), max_steps: STEPS };
    const specFile = path.join(home, 'rl-spec.json');
    writeFileSync(specFile, JSON.stringify(spec));
    const submitted = await runCommand('cf-submit-training', [specFile, '--watch', '--json', '--key', demoPaths(home).key], {
      FORGE_API_URL: stack.api,
      FORGE_HOME: home,
      FORGE_CLI_POLL_MS: '500',
    });
    expect({ code: submitted.code, stderr: submitted.stderr }).toEqual({ code: 0, stderr: expect.any(String) as string });
    const last = JSON.parse(submitted.stdout.trim().split('\n').pop()!) as { event: string; job_id: string; state: string; status: { artifacts: { commit: string } } };
    expect(last).toMatchObject({ event: 'final', state: 'COMPLETED' });
    const bare = demoPaths(home).modelsRepo;
    const log = execFileSync('git', ['--git-dir', bare, 'show', `${last.status.artifacts.commit}:models/job-${last.job_id}/training_log.jsonl`], { encoding: 'utf8' });
    const steps = readSteps(log);
    expect(steps.map((s) => s.step)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
    const first = mean(steps.slice(0, 3).map((s) => s.reward_mean));
    const end = mean(steps.slice(-3).map((s) => s.reward_mean));
    console.log(`rl on the embedded stack: reward first 3 steps ${first.toFixed(3)}, last 3 ${end.toFixed(3)}`);
    expect(end).toBeGreaterThan(first);

    // Idle again: the inference server stops, the RL process starts afresh, light again.
    const until = Date.now() + 60_000;
    let fresh: number | undefined;
    while (!fresh) {
      const pids = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(stack.proc.pid)], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => l.includes('local-rl.js'))
        .map((l) => Number(l.trim().split(/\s+/)[0]));
      const candidate = pids.find((p) => p !== pid);
      if (candidate && (stack.output().match(/stopped to start afresh/g) ?? []).length >= 2) fresh = candidate;
      else if (Date.now() > until) throw new Error(`the RL roles did not start afresh after the jobs:\n${stack.output()}`);
      else await new Promise((r) => setTimeout(r, 500));
    }
    await new Promise((r) => setTimeout(r, 3000));
    const after = treeRssMiB(fresh);
    console.log(`RL roles idle after the jobs: ${after.toFixed(0)} MiB RSS`);
    expect(after).toBeLessThanOrEqual(150);
  } finally {
    await connection.close();
  }
  await stopStack(stack);
  expect(stack.output()).toContain('[forge] stopped');
}, 300_000);

test('FORGE_LOCAL_RL=0: npm start runs no RL roles', async () => {
  const stack = await startStack(tempDir('forge-local-rl-off-'), { FORGE_LOCAL_RL: '0' });
  expect(stack.output()).toMatch(/RL: +off \(FORGE_LOCAL_RL=0\)/);
  const connection = await Connection.connect({ address: stack.temporal });
  try {
    await new Promise((r) => setTimeout(r, 2000));
    expect(await activityPollers(connection, 'forge-rollout')).toBe(0);
    expect(await activityPollers(connection, 'forge-grpo')).toBe(0);
  } finally {
    await connection.close();
  }
  const children = execFileSync('ps', ['-o', 'args=', '--ppid', String(stack.proc.pid)], { encoding: 'utf8' });
  expect(children).not.toContain('local-rl.js');
  await stopStack(stack);
}, 120_000);
