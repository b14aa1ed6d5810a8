/**
 * @module
 * Turns a fetch `Response` into HTTP/1.1 bytes: the status line, its headers with our own framing
 * (Content-Length, and `connection: close` when the connection ends), then the whole body. Responses
 * of choir's servers are small or already in memory, so bodies are read whole, never streamed.
 */

import type { RawHttpResponse } from "./raw.ts";

const encoder = new TextEncoder();

/**
 * Framing headers the handler does not get to set: the connection owns them (it reads a handler's
 * `Connection: close` as a wish to end the connection, and writes its own).
 */
const FRAMING = new Set(["content-length", "transfer-encoding", "connection", "keep-alive"]);

const REASONS: Record<number, string> = {
  100: "Continue",
  200: "OK",
  204: "No Content",
  400: "Bad Request",
  401: "Unauthorized",
  404: "Not Found",
  408: "Request Timeout",
  409: "Conflict",
  413: "Content Too Large",
  417: "Expectation Failed",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

/** The response head and body; the body is empty for HEAD requests (its length still announced). */
export async function responseBytes(
  res: Response,
  headRequest: boolean,
  keepAlive: boolean,
): Promise<{ head: Uint8Array; body: Uint8Array }> {
  const body = res.body === null ? new Uint8Array(0) : await res.bytes();
  let head = `HTTP/1.1 ${res.status} ${REASONS[res.status] ?? (res.statusText || "Status")}\r\n`;
  for (const [name, value] of res.headers) {
    if (!FRAMING.has(name)) head += `${name}: ${value}\r\n`;
  }
  head += `content-length: ${body.length}\r\n${keepAlive ? "" : "connection: close\r\n"}\r\n`;
  return { head: encoder.encode(head), body: headRequest ? new Uint8Array(0) : body };
}

/** The head and body of a {@link RawHttpResponse}, as {@link responseBytes} frames a `Response`. */
export function rawResponseBytes(
  res: RawHttpResponse,
  headRequest: boolean,
  keepAlive: boolean,
): { head: Uint8Array; body: Uint8Array } {
  const body = res.body ?? new Uint8Array(0);
  let head = `HTTP/1.1 ${res.status} ${REASONS[res.status] ?? "Status"}\r\n`;
  for (const name in res.headers) {
    if (!FRAMING.has(name)) head += `${name}: ${res.headers[name]}\r\n`;
  }
  head += `content-length: ${body.length}\r\n${keepAlive ? "" : "connection: close\r\n"}\r\n`;
  return { head: encoder.encode(head), body: headRequest ? new Uint8Array(0) : body };
}

/** A short plain-text response that refuses a request the connection could not hand on. */
export function refusal(status: number, message: string): Response {
  return new Response(message + "\n", { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}

/** The interim response that lets a client waiting on `Expect: 100-continue` send its body. */
export const CONTINUE: Uint8Array = encoder.encode("HTTP/1.1 100 Continue\r\n\r\n");
