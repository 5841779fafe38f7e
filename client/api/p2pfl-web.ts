/**
 * What each job's P2PFL nodes sent through P2PFL's web logger (issue 7; routes/p2pfl.ts): one JSON line per accepted
 * request in FORGE_HOME/p2pfl-web/<job_id>.jsonl, append-only and bounded. Node ids are derived from (attempt,
 * address), so a node that registers again, even through another API replica, gets its id back; a different node
 * whose hash collides gets the next free id.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { JOB_ID_PATTERN, p2pflRecordSchema, type P2pflRecord, type P2pflRecords } from './schemas';

/** The node_id names no node registered for this attempt of the job. */
export class UnknownNodeError extends Error {
  override name = 'UnknownNodeError';
}

/** The job's file reached its size limit. */
export class RecordsFullError extends Error {
  override name = 'RecordsFullError';
}

const MAX_NODE_ID = 2 ** 31 - 1;
export const DEFAULT_MAX_BYTES_PER_JOB = 32 * 1024 * 1024;
/** Jobs whose node table stays in memory (least recently used dropped first). */
const CACHED_JOBS = 1000;

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
/** A log line or metric as its POST body, tagged with its kind. */
export type NodeEntry = DistributiveOmit<Exclude<P2pflRecord, { kind: 'node' }>, 'attempt' | 'received_at' | 'node'>;

interface NodeInfo {
  attempt: number;
  address: string;
}

function nodeIdOf(attempt: number, address: string): number {
  return 1 + (createHash('sha256').update(`${attempt}\n${address}`, 'utf8').digest().readUInt32BE(0) % MAX_NODE_ID);
}

export class P2pflWebRecords {
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly nodes = new Map<string, Map<number, NodeInfo>>();

  constructor(
    readonly home: string,
    private readonly maxBytesPerJob = DEFAULT_MAX_BYTES_PER_JOB,
  ) {}

  file(jobId: string): string {
    // Routes validate the id; this keeps a bad one from ever becoming a path.
    if (!JOB_ID_PATTERN.test(jobId)) throw new Error(`not a job id: ${JSON.stringify(jobId)}`);
    return path.join(this.home, 'p2pfl-web', `${jobId}.jsonl`);
  }

  /** POST /node: the node's id, and whether this registered it (false: it was registered before). */
  register(jobId: string, attempt: number, body: { address: string; creation_date: string }): Promise<{ nodeId: number; created: boolean }> {
    return this.serial(jobId, async () => {
      const nodes = await this.nodeTable(jobId, true);
      let id = nodeIdOf(attempt, body.address);
      for (let known = nodes.get(id); known; known = nodes.get(id)) {
        if (known.attempt === attempt && known.address === body.address) return { nodeId: id, created: false };
        id = id >= MAX_NODE_ID ? 1 : id + 1;
      }
      await this.append(jobId, { kind: 'node', attempt, received_at: new Date().toISOString(), node_id: id, ...body });
      nodes.set(id, { attempt, address: body.address });
      return { nodeId: id, created: true };
    });
  }

  /** POST /node-log and /node-metric/*: kept with the node's address when the node is this attempt's. */
  record(jobId: string, attempt: number, entry: NodeEntry): Promise<void> {
    return this.serial(jobId, async () => {
      // Not known here: another replica may have registered it since this one read the file.
      const node = (await this.nodeTable(jobId, false)).get(entry.node_id) ?? (await this.nodeTable(jobId, true)).get(entry.node_id);
      if (!node || node.attempt !== attempt) {
        throw new UnknownNodeError(`node_id ${entry.node_id} is not a node registered for attempt ${attempt} of this job (POST …/node first)`);
      }
      await this.append(jobId, { ...entry, attempt, node: node.address, received_at: new Date().toISOString() });
    });
  }

  /** Everything the job's nodes sent (of one attempt, when given), oldest first; undefined when they sent nothing. */
  async read(jobId: string, attempt?: number): Promise<P2pflRecords | undefined> {
    const records = await this.load(jobId);
    if (!records) return undefined;
    const out: P2pflRecords = { job_id: jobId, nodes: [], logs: [], metrics: { local: [], global: [], system: [] } };
    // `kind` stays on each record: the response schema leaves it out.
    for (const r of records) {
      if (attempt !== undefined && r.attempt !== attempt) continue;
      switch (r.kind) {
        case 'node':
          out.nodes.push(r);
          break;
        case 'log':
          out.logs.push(r);
          break;
        case 'local':
          out.metrics.local.push(r);
          break;
        case 'global':
          out.metrics.global.push(r);
          break;
        case 'system':
          out.metrics.system.push(r);
          break;
      }
    }
    return out;
  }

  private async load(jobId: string): Promise<P2pflRecord[] | undefined> {
    let text: string;
    try {
      text = await fs.readFile(this.file(jobId), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const records: P2pflRecord[] = [];
    for (const line of text.split('\n')) {
      if (!line) continue;
      let json: unknown;
      try {
        json = JSON.parse(line);
      } catch {
        continue; // a line torn by a crash mid-append
      }
      const parsed = p2pflRecordSchema.safeParse(json);
      if (parsed.success) records.push(parsed.data);
    }
    return records;
  }

  private async nodeTable(jobId: string, reload: boolean): Promise<Map<number, NodeInfo>> {
    let table = this.nodes.get(jobId);
    if (!table || reload) {
      table = new Map();
      for (const r of (await this.load(jobId)) ?? []) if (r.kind === 'node') table.set(r.node_id, { attempt: r.attempt, address: r.address });
    }
    this.nodes.delete(jobId); // re-inserted last: most recently used
    this.nodes.set(jobId, table);
    for (const oldest of this.nodes.keys()) {
      if (this.nodes.size <= CACHED_JOBS) break;
      this.nodes.delete(oldest);
    }
    return table;
  }

  private async append(jobId: string, record: P2pflRecord): Promise<void> {
    const file = this.file(jobId);
    const line = `${JSON.stringify(record)}\n`;
    const size = await fs.stat(file).then(
      (s) => s.size,
      () => 0,
    );
    if (size + Buffer.byteLength(line) > this.maxBytesPerJob) {
      throw new RecordsFullError(`this job's P2PFL records reached ${this.maxBytesPerJob} bytes; further ones are refused`);
    }
    await fs.mkdir(path.dirname(file), { recursive: true });
    // One write with O_APPEND: lines from concurrent writers do not interleave.
    await fs.appendFile(file, line);
  }

  /** Runs fn after every earlier call for the same job (a node's id is checked and written in one step). */
  private serial<T>(jobId: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.queues.get(jobId) ?? Promise.resolve();
    const result = previous.then(fn);
    const tail = result.catch(() => undefined);
    this.queues.set(jobId, tail);
    void tail.then(() => {
      if (this.queues.get(jobId) === tail) this.queues.delete(jobId);
    });
    return result;
  }
}
