/**
 * Builds the backends named in the operator config, once at worker start. Each kind lives in its own file;
 * adding a kind is one case below (and one member of the config's union).
 */
import type { BackendConfig, ForgeConfig } from '../../common/config';
import { AkashBackend, type AkashBackendOptions } from './akash/akash';
import { LocalBackend, type LocalBackendOptions } from './local/local';
import { P2pflBackend } from './p2pfl/p2pfl';
import { PrimeIntellectBackend } from './prime-intellect/prime-intellect';
import { BackendError, type Backend } from './types';

export interface BackendFactoryOptions {
  local?: LocalBackendOptions;
  akash?: AkashBackendOptions;
  /**
   * This installation's tag (installation.ts), marked on every remote deployment so that installations sharing a
   * provider account never reap each other's; absent, only untagged marks are taken as this installation's.
   */
  installation?: string;
}

/** `earlierTags`: the operator's `reaper.earlier_tags`, the installation's tags from before a key rotation. */
function createBackend(name: string, config: BackendConfig, home: string, options: BackendFactoryOptions, earlierTags: readonly string[]): Backend {
  switch (config.kind) {
    case 'local':
      return new LocalBackend(name, config, home, options.local);
    case 'akash':
      return new AkashBackend(name, config, home, {
        ...(options.installation !== undefined && { installation: options.installation }),
        earlierTags,
        ...options.akash,
      });
    case 'prime-intellect':
      return new PrimeIntellectBackend(name, config, home, options.installation, earlierTags);
    case 'p2pfl':
      return new P2pflBackend(name, config, home, options.local);
  }
}

/** Every configured backend by its config name, in config order. */
export function createBackends(config: ForgeConfig, home: string, options: BackendFactoryOptions = {}): Map<string, Backend> {
  const backends = new Map<string, Backend>();
  for (const [name, backendConfig] of Object.entries(config.backends)) {
    const withEnv = { ...options, local: { envPassthrough: config.trainer_env_passthrough, ...options.local } };
    backends.set(name, createBackend(name, backendConfig, home, withEnv, config.reaper.earlier_tags));
  }
  return backends;
}

export function getBackend(backends: ReadonlyMap<string, Backend>, name: string): Backend {
  const backend = backends.get(name);
  if (backend) return backend;
  const configured = [...backends.keys()].join(', ') || '(none)';
  throw new BackendError('REJECTED', `unknown backend "${name}"; configured: ${configured}`);
}
