/**
 * @module
 * Parses an HTTP/1.x request head (request line and headers, already known to end in CRLF CRLF) into
 * what the connection needs, or into the status that refuses it. Strict where looseness lets a request
 * be read two ways: one Content-Length, no Transfer-Encoding, no folded lines, origin-form targets.
 */

/** A request head that was understood. */
export interface RequestHead {
  /** The method, e.g. `GET`. */
  method: string;
  /** The origin-form target: path and query. */
  target: string;
  /** Header fields in arrival order, names lower-cased. */
  headers: [string, string][];
  /** Body length (0 without Content-Length). */
  contentLength: number;
  /** Whether the connection may carry another request after this one. */
  keepAlive: boolean;
  /** Whether the client waits for `100 Continue` before sending its body. */
  expectContinue: boolean;
}

/** A head refused: the status to answer before closing, and why. */
export interface BadHead {
  /** HTTP status (400, 413 is the connection's, 431, 501, 505). */
  status: number;
  /** Why, for the response body. */
  message: string;
}

const decoder = new TextDecoder("latin1");
const REQUEST_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\/\S*) HTTP\/1\.([01])$/;
const MAX_FIELDS = 100;

/** Parses `bytes` (the head without its final CRLF CRLF). */
export function parseHead(bytes: Uint8Array): RequestHead | BadHead {
  const lines = decoder.decode(bytes).split("\r\n");
  const m = REQUEST_LINE.exec(lines[0]);
  if (m === null) {
    return /^\S+ \S+ HTTP\/\d/.test(lines[0])
      ? { status: 505, message: "only HTTP/1.0 and HTTP/1.1 with origin-form targets are served" }
      : { status: 400, message: "malformed request line" };
  }
  if (lines.length - 1 > MAX_FIELDS) return { status: 431, message: `more than ${MAX_FIELDS} header fields` };
  const headers: [string, string][] = [];
  let contentLength: string | undefined;
  let connection = "";
  let expectContinue = false;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(":");
    // A folded continuation line (leading blank) or a line without a colon is never guessed at.
    if (colon <= 0 || line.charCodeAt(0) === 32 || line.charCodeAt(0) === 9) {
      return { status: 400, message: "malformed header field" };
    }
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers.push([name, value]);
    if (name === "content-length") {
      if (!/^\d{1,15}$/.test(value) || (contentLength !== undefined && contentLength !== value)) {
        return { status: 400, message: "bad or conflicting Content-Length" };
      }
      contentLength = value;
    } else if (name === "transfer-encoding") {
      return { status: 501, message: "request bodies need a Content-Length (no Transfer-Encoding)" };
    } else if (name === "connection") {
      connection += value.toLowerCase();
    } else if (name === "expect") {
      if (value.toLowerCase() !== "100-continue") return { status: 417, message: "unsupported Expect" };
      expectContinue = true;
    }
  }
  const http10 = m[3] === "0";
  return {
    method: m[1],
    target: m[2],
    headers,
    contentLength: contentLength === undefined ? 0 : Number(contentLength),
    keepAlive: http10 ? connection.includes("keep-alive") : !connection.includes("close"),
    expectContinue,
  };
}

/** Whether a parse result is a refusal. */
export function isBadHead(h: RequestHead | BadHead): h is BadHead {
  return "status" in h;
}
