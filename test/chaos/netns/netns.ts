/**
 * Network namespaces for the chaos suite's partition (issue 13 6g), made and removed by the test itself: two
 * namespaces joined by a veth pair with addresses only inside them — the orchestrator's and the provider's. The
 * orchestrator's namespace reaches the root namespace's Temporal dev server and webhook receiver through unix
 * sockets (socat on both sides, same port numbers), so only the veth link carries orchestrator ↔ provider traffic:
 * `cut()` sets it down (a real partition: routes gone, packets dropped), `heal()` brings it back.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export interface Partition {
  orchestrator: string;
  provider: string;
  /** The provider namespace's address (the fake listens there). */
  providerAddress: string;
  cut(): void;
  heal(): void;
  /** Runs argv inside a namespace. */
  spawnIn(ns: string, argv: string[], env: NodeJS.ProcessEnv, stdio?: 'pipe' | 'ignore'): ChildProcess;
  /** Whether the orchestrator's namespace can open a TCP connection to host:port now (1 s to try). */
  reaches(host: string, port: number): boolean;
  /** Makes 127.0.0.1:port of the root namespace reachable at 127.0.0.1:port inside the orchestrator's namespace. */
  bridge(port: number): Promise<void>;
  remove(): void;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: 'pipe' });
}

/** Why namespaces cannot be made here (not root, no `ip`, no socat), or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root: ip netns needs CAP_SYS_ADMIN';
  try {
    execFileSync('socat', ['-V'], { stdio: 'pipe' });
  } catch {
    return 'socat is not installed (it bridges Temporal into the namespace)';
  }
  const probe = `fcprobe${process.pid % 100000}`;
  try {
    ip('netns', 'add', probe);
    ip('netns', 'del', probe);
  } catch (err) {
    return `ip netns add is not permitted: ${(err as Error).message.split('\n')[0]}`;
  }
  return undefined;
}

export function makePartition(dir: string): Partition {
  const id = process.pid % 100000;
  const orchestrator = `fco${id}`;
  const provider = `fcp${id}`;
  const vo = `fcvo${id}`;
  const vp = `fcvp${id}`;
  // A /30 in the benchmarking range (RFC 2544), inside the test's own namespaces only.
  const [oAddr, pAddr] = ['198.18.0.1', '198.18.0.2'];
  const procs: ChildProcess[] = [];
  ip('netns', 'add', orchestrator);
  ip('netns', 'add', provider);
  ip('link', 'add', vo, 'netns', orchestrator, 'type', 'veth', 'peer', 'name', vp, 'netns', provider);
  for (const [ns, dev, addr] of [
    [orchestrator, vo, oAddr],
    [provider, vp, pAddr],
  ] as const) {
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('-n', ns, 'addr', 'add', `${addr}/30`, 'dev', dev);
    ip('-n', ns, 'link', 'set', dev, 'up');
  }
  const spawnIn = (ns: string, argv: string[], env: NodeJS.ProcessEnv, stdio: 'pipe' | 'ignore' = 'ignore'): ChildProcess => {
    const p = spawn('ip', ['netns', 'exec', ns, ...argv], { env, stdio: ['ignore', stdio, stdio] });
    procs.push(p);
    return p;
  };
  return {
    orchestrator,
    provider,
    providerAddress: pAddr,
    cut: () => ip('-n', orchestrator, 'link', 'set', vo, 'down'),
    heal: () => ip('-n', orchestrator, 'link', 'set', vo, 'up'),
    spawnIn,
    reaches(host: string, port: number): boolean {
      const probe = `const s=require('net').connect(${port},'${host}',()=>process.exit(0));s.on('error',()=>process.exit(3));setTimeout(()=>process.exit(4),1000)`;
      try {
        execFileSync('ip', ['netns', 'exec', orchestrator, process.execPath, '-e', probe], { stdio: 'pipe' });
        return true;
      } catch {
        return false;
      }
    },
    async bridge(port: number): Promise<void> {
      const sock = path.join(dir, `bridge-${port}.sock`);
      procs.push(spawn('socat', [`UNIX-LISTEN:${sock},fork`, `TCP:127.0.0.1:${port}`], { stdio: 'ignore' }));
      await new Promise((r) => setTimeout(r, 300));
      spawnIn(orchestrator, ['socat', `TCP-LISTEN:${port},bind=127.0.0.1,fork,reuseaddr`, `UNIX-CONNECT:${sock}`], process.env);
      await new Promise((r) => setTimeout(r, 300));
    },
    remove(): void {
      for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
      for (const ns of [orchestrator, provider]) {
        try {
          ip('netns', 'del', ns);
        } catch {
          // already gone
        }
      }
    },
  };
}
