import { randomUUID } from 'node:crypto';
import net from 'node:net';
import type { Client } from '@temporalio/client';

export function median(xs: number[]): number {
  return percentile(xs, 50);
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

/** A minimal valid unsigned spec for the local backend running trainer image `image`. */
export function benchSpec(owner: string, image: string): Record<string, unknown> {
  return {
    job_id: randomUUID(),
    owner_did: owner,
    created_at: Math.floor(Date.now() / 1000),
    job_type: 'finetune',
    // A hub name and an https data repo: the trainers here read neither, and the operator's path policy need not allow them.
    base_model: { name: 'tiny', source: 'huggingface', revision: 'main' },
    objective: { optimize_for: 'success_rate', task_types: ['toy'], target_metric: 0.9, max_steps: 1 },
    data: { source: 'git', repo: 'https://git.example.com/forge/datasets.git', branch: 'main', path: 'data', format: 'jsonl', validation_split: 0.1 },
    hyperparameters: { learning_rate: 0.001, batch_size: 1, gradient_accumulation_steps: 1, warmup_steps: 0, weight_decay: 0 },
    resources: { gpus: 0, cpus: 1, ram_gb: 1, storage_gb: 1, max_hours: 1 },
    backend: { provider: 'local', region: 'any', max_cost_usd: 1 },
    artifacts: { output_repo: 'file:///tmp/none-out', output_branch: 'jobs/${job_id}', save_checkpoints: false, checkpoint_interval_steps: 1000 },
    trainer: { image },
  };
}

const TIMELINE_EVENTS: Record<number, string> = { 5: 'Ws', 6: 'Wt', 7: 'Wc', 10: 'As', 11: 'At', 12: 'Ac', 2: 'End' };

/**
 * A workflow's task timeline from its history, in ms since it started: "Ws0 Wt25 Wc66 As69 …" (workflow task
 * scheduled / started / completed, activity task scheduled / started / completed, end). Shows where a run's time went:
 * e.g. a workflow task that waited 50 ms between scheduled and started waited on the server, not on the worker.
 */
export async function taskTimeline(client: Client, workflowId: string): Promise<string> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const events = history.events ?? [];
  const at = (e: (typeof events)[number]): number => Number(e.eventTime?.seconds ?? 0) * 1000 + (e.eventTime?.nanos ?? 0) / 1e6;
  const t0 = events[0] ? at(events[0]) : 0;
  return events
    .filter((e) => TIMELINE_EVENTS[Number(e.eventType)])
    .map((e) => `${TIMELINE_EVENTS[Number(e.eventType)]}${(at(e) - t0).toFixed(0)}`)
    .join(' ');
}
