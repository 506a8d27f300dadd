// Types of @fovea/native/doctor (doctor.js): the installation check behind `fovea doctor`
// and `npx fovea-native doctor`.
export interface DoctorResult {
  /** false when the addon does not load, FOVEA_DEVICE=cuda cannot be honoured, or an
   *  installed NVIDIA driver is not usable by Fovea. */
  ok: boolean;
  /** Human-readable report, one fact per line, ending with the verdict. */
  text: string;
  /** The same facts as data: platform, cpu, addon (attempts), prebuilt packages, cuda. */
  report: Record<string, unknown>;
}
export function doctor(): Promise<DoctorResult>;
