/**
 * A trainer host's policy slots (one job's policy each, e.g. one per GPU) and the shared queue's activity slot
 * supplier built on them: the host polls `forge-grpo` only while a slot is free, so a full host never takes a job it
 * cannot run.
 */
import type { ActivitySlotInfo, CustomSlotSupplier, SlotPermit } from '@temporalio/worker';

export class SlotPool {
  /** Slots of sessions that run or are starting. */
  private readonly busy = new Set<number>();
  /** Activity slots handed to the shared queue's poller (each may become a session). */
  private permits = 0;
  private waiters: (() => void)[] = [];

  /** `closed()`: true once the host drains (no new slot is handed out). */
  constructor(
    private readonly slots: number,
    private readonly closed: () => boolean,
  ) {}

  private free(): number {
    return this.slots - this.busy.size - this.permits;
  }

  /** Someone waiting for a slot looks again (a slot was freed, or the host drains). */
  wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** The lowest free slot, now busy; undefined when none is. */
  take(): number | undefined {
    const slot = [...Array(this.slots).keys()].find((i) => !this.busy.has(i));
    if (slot !== undefined) this.busy.add(slot);
    return slot;
  }

  give(slot: number): void {
    this.busy.delete(slot);
    this.wake();
  }

  /** The shared queue's activity slots: one per free policy slot, so that a full host does not poll for jobs. */
  supplier(): CustomSlotSupplier<ActivitySlotInfo> {
    return {
      type: 'custom',
      reserveSlot: (_ctx, abort): Promise<SlotPermit> =>
        new Promise<SlotPermit>((resolve, reject) => {
          // Rejected with the signal's own reason: what the SDK expects of an aborted reservation.
          const attempt = (): void => {
            if (abort.aborted) return reject(abort.reason);
            if (!this.closed() && this.free() > 0) {
              this.permits++;
              return resolve({});
            }
            this.waiters.push(attempt);
          };
          abort.addEventListener('abort', () => {
            this.waiters = this.waiters.filter((f) => f !== attempt);
            reject(abort.reason);
          }, { once: true });
          attempt();
        }),
      tryReserveSlot: (): SlotPermit | null => {
        if (this.closed() || this.free() <= 0) return null;
        this.permits++;
        return {};
      },
      markSlotUsed: () => undefined,
      releaseSlot: () => {
        this.permits = Math.max(0, this.permits - 1);
        this.wake();
      },
    };
  }
}
