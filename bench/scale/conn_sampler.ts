/**
 * @module
 * Counts the TCP connections a server holds on one port, from outside the process (`ss`, sampled by a
 * shell loop), so that the count is the kernel's and the same for any server: choir's store old or new,
 * torch's TCPStore. Keeps the peak. Where `ss` is missing the peak reads -1.
 *
 * The pause between samples is at least 9 times the last sample's duration: `ss` walks every socket of the
 * machine, which at 4,096 simulated ranks (about 70,000 sockets) took 100-250 ms a call here, so a fixed
 * 50 ms pause kept it running most of the time on one of the 2 cores the ranks need. Held connections make
 * a plateau, so the coarser sampling still finds the peak.
 */

/** A running sampler. */
export interface ConnSampler {
  /** The largest count seen so far. */
  readonly peak: () => number;
  /** Stops sampling; resolves with the peak. */
  stop(): Promise<number>;
}

/** Starts sampling the established connections whose local port is `port`, at most every `everyMs`. */
export function sampleConnections(port: number, everyMs = 50): ConnSampler {
  let peak = -1;
  let child: Deno.ChildProcess;
  try {
    const loop = `while :; do s=$(date +%s%N); ss -Htn state established "( sport = :${port} )" | wc -l; ` +
      `w=$(( ($(date +%s%N) - s) * 9 / 1000000 )); (( w < ${everyMs} )) && w=${everyMs}; ` +
      `sleep $(( w / 1000 )).$(printf %03d $(( w % 1000 ))); done`;
    child = new Deno.Command("bash", { args: ["-c", loop], stdout: "piped", stderr: "null", stdin: "null" })
      .spawn();
  } catch {
    return { peak: () => peak, stop: () => Promise.resolve(peak) };
  }
  const reading = (async () => {
    let buf = "";
    const dec = new TextDecoder();
    for await (const bytes of child.stdout) {
      buf += dec.decode(bytes, { stream: true });
      const lines = buf.split("\n");
      buf = lines.pop() ?? "";
      for (const l of lines) {
        const n = Number(l.trim());
        if (Number.isFinite(n)) peak = Math.max(peak, n);
      }
    }
  })();
  return {
    peak: () => peak,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* exited */ }
      await child.status;
      await reading.catch(() => {});
      return peak;
    },
  };
}
