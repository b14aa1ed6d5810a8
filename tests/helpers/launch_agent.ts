/**
 * @module
 * Test helper: one launcher process (`deno run -A launch/mod.ts ...`) whose output lines can be awaited,
 * killed after a deadline so that a hung launcher fails its test instead of the suite.
 */

const here = (path: string) => new URL(`../../${path}`, import.meta.url).pathname;

/** A launcher process whose output lines can be awaited. */
export class Agent {
  /** Every line it printed so far, stdout and stderr as they came. */
  readonly lines: string[] = [];
  /** Its exit code, once it has exited and its output is drained. */
  readonly done: Promise<number>;
  #waiters: { re: RegExp; count: number; resolve: () => void }[] = [];
  readonly #child: Deno.ChildProcess;
  #exited = false;

  /** Starts `launch/mod.ts` with `args`; SIGKILLs it after `limitMs`. */
  constructor(args: string[], limitMs = 60_000) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", here("launch/mod.ts"), ...args],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => this.kill(), limitMs);
    this.done = Promise.all([this.#read(this.#child.stdout), this.#read(this.#child.stderr)])
      .then(() => this.#child.status)
      .then((s) => {
        clearTimeout(timer);
        this.#exited = true;
        return s.code;
      });
  }

  /** The launcher's pid. */
  get pid(): number {
    return this.#child.pid;
  }

  /** SIGKILLs it (nothing if it has exited). */
  kill(): void {
    if (this.#exited) return;
    try {
      this.#child.kill("SIGKILL");
    } catch { /* exited */ }
  }

  /** Resolves once `count` lines match `re` (rejects after `ms`). */
  waitFor(re: RegExp, count = 1, ms = 30_000): Promise<void> {
    if (this.lines.filter((l) => re.test(l)).length >= count) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`no ${count} line(s) matching ${re} in:\n${this.text}`)),
        ms,
      );
      this.#waiters.push({ re, count, resolve: () => (clearTimeout(t), resolve()) });
    });
  }

  /** Resolves with the exit code, or rejects when it has not exited within `ms`. */
  exitWithin(ms: number): Promise<number> {
    let t: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      t = setTimeout(() => reject(new Error(`still running after ${ms} ms:\n${this.text}`)), ms);
    });
    return Promise.race([this.done, late]).finally(() => clearTimeout(t));
  }

  /** Its output so far, one string. */
  get text(): string {
    return this.lines.join("\n");
  }

  /** The number in the last line matching `re` (its first group). */
  lastNumber(re: RegExp): number {
    const line = this.lines.findLast((l) => re.test(l));
    if (line === undefined) throw new Error(`no line matching ${re} in:\n${this.text}`);
    return Number(line.match(re)![1]);
  }

  async #read(s: ReadableStream<Uint8Array>): Promise<void> {
    let pending = "";
    for await (const chunk of s.pipeThrough(new TextDecoderStream())) {
      const parts = (pending + chunk).split("\n");
      pending = parts.pop()!;
      this.lines.push(...parts);
      this.#waiters = this.#waiters.filter((w) => {
        const ok = this.lines.filter((l) => w.re.test(l)).length >= w.count;
        if (ok) w.resolve();
        return !ok;
      });
    }
    if (pending) this.lines.push(pending);
  }
}

/** Kills `pid` with SIGKILL, ignoring a process that is gone already. */
export function killPid(pid: number): void {
  try {
    Deno.kill(pid, "SIGKILL");
  } catch { /* gone */ }
}
