import { randomUUID } from 'node:crypto';
import net from 'node:net';

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
    base_model: { name: 'tiny', source: 'local', revision: 'main' },
    objective: { optimize_for: 'success_rate', task_types: ['toy'], target_metric: 0.9, max_steps: 1 },
    data: { source: 'git', repo: 'file:///tmp/none', branch: 'main', path: 'data', format: 'jsonl', validation_split: 0.1 },
    hyperparameters: { learning_rate: 0.001, batch_size: 1, gradient_accumulation_steps: 1, warmup_steps: 0, weight_decay: 0 },
    resources: { gpus: 0, cpus: 1, ram_gb: 1, storage_gb: 1, max_hours: 1 },
    backend: { provider: 'local', region: 'any', max_cost_usd: 1 },
    artifacts: { output_repo: 'file:///tmp/none-out', output_branch: 'jobs/${job_id}', save_checkpoints: false, checkpoint_interval_steps: 1000 },
    trainer: { image },
  };
}
