/** The one value a validated job's steps share: its record, its signed spec, the operator's settings for it. */
import type { JobSettings } from '../../activities/control/activities';
import type { SignedSpec } from '../../jobspec/signed-spec';
import type { JobRecord } from '../lifecycle/job-record';
import type { RlProgressBox } from './rl-attempt';

export interface JobRun {
  job: JobRecord;
  /** The typed spec, the signed JSON as submitted (what a backend ships) and its sha256, never apart. */
  signed: SignedSpec;
  settings: JobSettings;
  /** rl jobs: the grpoRun child's progress, which the status query shows. */
  rlBox: RlProgressBox;
}
