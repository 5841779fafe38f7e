/**
 * Reading a local trainer's output: progress events on its stdout (scanned incrementally, so a huge log is never
 * re-read) and the log cursor of logs(). Split from local.ts.
 */
import { BackendError, type TrainingProgress } from '../types';
import { fileSize, readRange } from '../../../common/files';
import type { Workspace } from './local-workspace';

const PROGRESS_TAIL_BYTES = 64 * 1024;

interface ProgressTail {
  offset: number;
  progress?: TrainingProgress;
}

/** Per workspace: how far stdout.log was scanned for progress. */
export class ProgressReader {
  private readonly tails = new Map<string, ProgressTail>();

  /** The newest progress event, scanning only what stdout.log gained since last time (at most its last 64 KiB). */
  async read(ws: Workspace): Promise<TrainingProgress | undefined> {
    const file = ws.file('stdout');
    const size = await fileSize(file);
    let tail = this.tails.get(ws.dir) ?? { offset: 0 };
    if (size < tail.offset) tail = { offset: 0 }; // truncated or replaced
    const start = Math.max(tail.offset, size - PROGRESS_TAIL_BYTES);
    const buf = await readRange(file, start, size - start);
    const lastNewline = buf.lastIndexOf(0x0a);
    if (lastNewline >= 0) {
      const lines = buf.subarray(0, lastNewline).toString('utf8').split('\n');
      if (start > tail.offset) lines.shift(); // we jumped into the middle of a line
      const found = lines.reverse().map(parseProgress).find((p) => p !== undefined);
      tail = { offset: start + lastNewline + 1, progress: found ?? tail.progress };
    }
    this.tails.set(ws.dir, tail);
    return tail.progress;
  }

  forget(ws: Workspace): void {
    this.tails.delete(ws.dir);
  }
}

export function parseProgress(line: string): TrainingProgress | undefined {
  if (!line.startsWith('{')) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const event = value as Record<string, unknown>;
  if (event.event !== 'progress' || typeof event.step !== 'number') return undefined;
  return {
    step: event.step,
    ...(typeof event.max_steps === 'number' && { maxSteps: event.max_steps }),
    ...(typeof event.loss === 'number' && { loss: event.loss }),
  };
}

export function encodeCursor(stdoutOffset: number, stderrOffset: number): string {
  return `v1:${stdoutOffset}:${stderrOffset}`;
}

export function decodeCursor(cursor: string | undefined): [number, number] {
  if (cursor === undefined || cursor === '') return [0, 0];
  const m = /^v1:(\d+):(\d+)$/.exec(cursor);
  if (!m) throw new BackendError('REJECTED', `invalid log cursor "${cursor}"`);
  return [Number(m[1]), Number(m[2])];
}
