/**
 * @module
 * What one run of the scale harness measured (`harness.ts` makes it, `scale_plot.ts` draws it): its own
 * module so that neither imports the other.
 */

/** One harness run. */
export interface ScaleRow {
  /** The checkout measured (`--choir`), or "this tree". */
  label?: string;
  n: number;
  procs: number;
  connect: string;
  /** Process start to every process loaded, ms (Deno start and module loading; not in totalMs). */
  launchMs: number;
  /** From the start signal until the last rank finished each phase, ms (cumulative). */
  phasesMs: Record<string, number>;
  totalMs: number;
  /** Store requests, in all and by route. */
  requests: number;
  byRoute: Record<string, number>;
  /** The most connections the store server held at once. */
  peakStoreConnections: number;
  /** TCP links between ranks after the first collective (each counted once). */
  links: number;
  /** Resident memory of the rank processes over the ranks, MiB per rank (runtime included). */
  rssMiBPerRank: number;
}
