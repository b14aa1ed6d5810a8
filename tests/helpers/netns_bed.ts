/**
 * @module
 * A multi-host test bed on one machine: N network namespaces ("nodes", 10.78.0.1..N) joined by veth pairs
 * to a bridge (10.78.0.254). Needs root and `ip`; `makeNetnsBed` returns the reason when it cannot.
 * As a script it runs one launcher per node and prefixes their output with `[node i] `:
 *
 *   deno run -A tests/helpers/netns_bed.ts 3 -- --nnodes 3 --nproc-per-node 2 \
 *     --rdzv-endpoint 10.78.0.1:29400 --rdzv-id demo examples/elastic_linear.ts
 */

const dec = new TextDecoder();

/** A set of namespaces; `close()` removes them and kills what still runs in them. */
export interface NetnsBed {
  /** Number of nodes. */
  readonly nodes: number;
  /** The address of node `i`. */
  addr(i: number): string;
  /** Starts `cmd args` inside node `i`'s namespace (env adds to ours; CHOIR_HOST_ID names the node). */
  spawn(i: number, cmd: string, args: string[], env?: Record<string, string>): Deno.ChildProcess;
  /** Removes every namespace, veth and the bridge. */
  close(): Promise<void>;
}

/** Names of one bed, so that two beds with different `tag`s can coexist. */
function names(tag: string) {
  return {
    bridge: `${tag}br`,
    ns: (i: number) => `${tag}ns${i}`,
    dev: (i: number) => `${tag}v${i}`,
  };
}

async function run(cmd: string, args: string[]): Promise<{ ok: boolean; err: string }> {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
    return { ok: out.success, err: dec.decode(out.stderr).trim() };
  } catch (e) {
    return { ok: false, err: String(e) };
  }
}

async function tearDown(n: number, tag: string): Promise<void> {
  const nm = names(tag);
  for (let i = 0; i < n; i++) {
    try {
      const out = await new Deno.Command("ip", { args: ["netns", "pids", nm.ns(i)], stderr: "null" })
        .output();
      for (const pid of dec.decode(out.stdout).split(/\s+/).filter(Boolean)) {
        try {
          Deno.kill(Number(pid), "SIGKILL");
        } catch { /* gone */ }
      }
    } catch { /* no such namespace */ }
    await run("ip", ["netns", "del", nm.ns(i)]);
    await run("ip", ["link", "del", `${nm.dev(i)}b`]);
  }
  await run("ip", ["link", "del", nm.bridge]);
}

/** What {@link probeNetns} found: null where the thing works, else why not. */
export interface NetnsSupport {
  /** Network namespaces joined by veth pairs to a bridge (needs root and `ip`). */
  netns: string | null;
  /** `tc qdisc ... netem` on a veth inside a namespace (needs `tc` and the kernel's sch_netem). */
  netem: string | null;
}

/**
 * Decides, before any test runs, whether this machine can host a bed: makes a throwaway namespace, a
 * veth pair moved into it and a bridge, tries a netem qdisc on the veth, and removes them all. `tag`
 * keeps two files' probes apart.
 */
export async function probeNetns(tag: string): Promise<NetnsSupport> {
  const [ns, br, dev] = [`${tag}ns`, `${tag}br`, `${tag}v`];
  const clean = async () => {
    await run("ip", ["netns", "del", ns]);
    await run("ip", ["link", "del", `${dev}b`]);
    await run("ip", ["link", "del", br]);
  };
  if (Deno.build.os !== "linux") {
    return { netns: `network namespaces are Linux only (${Deno.build.os})`, netem: null };
  }
  await clean();
  try {
    const steps: [string, string[]][] = [
      ["ip", ["netns", "add", ns]],
      ["ip", ["link", "add", br, "type", "bridge"]],
      ["ip", ["link", "add", dev, "type", "veth", "peer", "name", `${dev}b`]],
      ["ip", ["link", "set", dev, "netns", ns]],
    ];
    for (const [cmd, args] of steps) {
      const r = await run(cmd, args);
      if (!r.ok) {
        return { netns: `\`${cmd} ${args.join(" ")}\` failed: ${r.err || "not permitted"}`, netem: null };
      }
    }
    const tc = ["netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "netem", "delay", "1ms"];
    const r = await run("ip", tc);
    return { netns: null, netem: r.ok ? null : `\`ip ${tc.join(" ")}\` failed: ${r.err || "not permitted"}` };
  } finally {
    await clean();
  }
}

/**
 * Builds `n` namespaces on subnet 10.`subnet`.0.0/24 joined by a bridge; returns the bed, or a string
 * saying why it could not (not root, no `ip`, no netns support).
 */
export async function makeNetnsBed(n: number, tag = "choir-e", subnet = 78): Promise<NetnsBed | string> {
  const nm = names(tag);
  const addr = (i: number) => `10.${subnet}.0.${i + 1}`;
  await tearDown(n, tag);
  const steps: [string, string[]][] = [
    ["ip", ["link", "add", nm.bridge, "type", "bridge"]],
    ["ip", ["addr", "add", `10.${subnet}.0.254/24`, "dev", nm.bridge]],
    ["ip", ["link", "set", nm.bridge, "up"]],
  ];
  for (let i = 0; i < n; i++) {
    const [ns, dev] = [nm.ns(i), nm.dev(i)];
    steps.push(
      ["ip", ["netns", "add", ns]],
      ["ip", ["link", "add", dev, "type", "veth", "peer", "name", `${dev}b`]],
      ["ip", ["link", "set", `${dev}b`, "master", nm.bridge]],
      ["ip", ["link", "set", `${dev}b`, "up"]],
      ["ip", ["link", "set", dev, "netns", ns]],
      ["ip", ["netns", "exec", ns, "ip", "addr", "add", `${addr(i)}/24`, "dev", dev]],
      ["ip", ["netns", "exec", ns, "ip", "link", "set", dev, "up"]],
      ["ip", ["netns", "exec", ns, "ip", "link", "set", "lo", "up"]],
    );
  }
  for (const [cmd, args] of steps) {
    const r = await run(cmd, args);
    if (!r.ok) {
      await tearDown(n, tag);
      return `\`${cmd} ${args.join(" ")}\` failed: ${r.err || "not permitted"}`;
    }
  }
  return {
    nodes: n,
    addr,
    spawn(i, cmd, args, env = {}) {
      return new Deno.Command("ip", {
        args: ["netns", "exec", nm.ns(i), cmd, ...args],
        env: { CHOIR_HOST_ID: `netns-node-${i}`, NO_COLOR: "1", ...env },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    },
    close: () => tearDown(n, tag),
  };
}

async function pump(stream: ReadableStream<Uint8Array>, prefix: string, out: typeof Deno.stdout) {
  const enc = new TextEncoder();
  let pending = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    const lines = (pending + chunk).split("\n");
    pending = lines.pop()!;
    if (lines.length > 0) out.writeSync(enc.encode(lines.map((l) => prefix + l + "\n").join("")));
  }
  if (pending !== "") out.writeSync(enc.encode(prefix + pending + "\n"));
}

if (import.meta.main) {
  const sep = Deno.args.indexOf("--");
  const n = Number(Deno.args[0]);
  if (!(n >= 1) || sep < 0) {
    console.error("usage: deno run -A tests/helpers/netns_bed.ts N -- LAUNCHER_ARGS...  (as root)");
    Deno.exit(2);
  }
  const bed = await makeNetnsBed(n);
  if (typeof bed === "string") {
    console.error(`netns_bed: cannot build the namespaces: ${bed}`);
    Deno.exit(1);
  }
  const launcher = new URL("../../launch/mod.ts", import.meta.url).pathname;
  const codes = await Promise.all(Array.from({ length: n }, async (_, i) => {
    const child = bed.spawn(i, Deno.execPath(), ["run", "-A", launcher, ...Deno.args.slice(sep + 1)]);
    await Promise.all([
      pump(child.stdout, `[node ${i}] `, Deno.stdout),
      pump(child.stderr, `[node ${i}] `, Deno.stderr),
    ]);
    return (await child.status).code;
  }));
  await bed.close();
  console.error(`netns_bed: launcher exit codes ${codes.join(", ")}`);
  Deno.exit(codes.find((c) => c !== 0) ?? 0);
}
