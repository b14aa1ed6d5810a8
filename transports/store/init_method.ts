/**
 * @module
 * Parses an init method URL (`env://`, `tcp://host:port`, `file:///path`) into a typed description.
 * Turning it into a store is rendezvous.ts's job.
 */

import { fileURLToPath } from "node:url";
import { RendezvousError } from "../../errors.ts";

/** A parsed init method. */
export type InitMethod =
  | { readonly kind: "env" }
  | { readonly kind: "tcp"; readonly host: string; readonly port: number }
  | { readonly kind: "file"; readonly path: string };

const EXAMPLES = "expected env://, tcp://HOST:PORT or file:///ABSOLUTE/PATH";

/** Parses `url` (undefined = `env://`); throws RendezvousError saying what is wrong with it. */
export function parseInitMethod(url: string | undefined): InitMethod {
  const op = "parseInitMethod";
  if (url === undefined) return { kind: "env" };
  const bad = (why: string) => new RendezvousError(`bad init method ${JSON.stringify(url)}: ${why}`, { op });
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw bad(`not a URL; ${EXAMPLES}`);
  }
  const tail = parsed.pathname + parsed.search + parsed.hash;
  switch (parsed.protocol) {
    case "env:":
      if (parsed.host !== "" || (tail !== "" && tail !== "/")) throw bad("env:// takes nothing after it");
      return { kind: "env" };
    case "tcp:": {
      if (parsed.hostname === "") throw bad("tcp:// needs a host, as in tcp://10.0.0.1:29500");
      if (parsed.port === "") throw bad("tcp:// needs a port, as in tcp://10.0.0.1:29500");
      if (tail !== "" && tail !== "/") throw bad("tcp:// takes only HOST:PORT");
      const port = Number(parsed.port);
      if (port === 0) throw bad("port 0 cannot be a rendezvous port");
      return { kind: "tcp", host: parsed.hostname.replace(/^\[(.*)\]$/, "$1"), port };
    }
    case "file:": {
      if (parsed.search !== "" || parsed.hash !== "") throw bad("file:// takes only a path");
      let path: string;
      try {
        path = fileURLToPath(parsed);
      } catch {
        throw bad("file:// needs an absolute path, as in file:///tmp/choir-store");
      }
      if (path === "/" || path === "") throw bad("file:// needs a directory path, not /");
      return { kind: "file", path };
    }
    default:
      throw bad(`unknown scheme ${JSON.stringify(parsed.protocol)}; ${EXAMPLES}`);
  }
}
