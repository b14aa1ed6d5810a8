/**
 * @module
 * Counts the TCP connections a server holds on one port, from outside the process (`ss`, sampled every
 * 50 ms by a shell loop), so that the count is the kernel's and the same for any server: choir's store
 * old or new, torch's TCPStore. Keeps the peak. Where `ss` is missing the peak reads -1.
 */

/** A running sampler. */
export interface ConnSampler {
  /** The largest count seen so far. */
  readonly peak: () => number;
  /** Stops sampling; resolves with the peak. */
  stop(): Promise<number>;
}

/** Starts sampling the established connections whose local port is `port`. */
export function sampleConnections(port: number, everyMs = 50): ConnSampler {
  let peak = -1;
  let child: Deno.ChildProcess;
  try {
    const loop = `while :; do ss -Htn state established "( sport = :${port} )" | wc -l; sleep ${
      everyMs / 1000
    }; done`;
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
