/**
 * @module
 * The lean way to serve a request on choir's bounded HTTP server: the handler gets the parsed head and
 * the body bytes and answers a status, headers and bytes, with no fetch `Request`/`Response` objects in
 * between. The store serves every rank's start-up this way (a `Request` and a `Response` cost about as
 * much as the rest of a store request here); the status pages keep Hono's `fetch`.
 */

/** A request as the connection read it. */
export interface RawHttpRequest {
  /** The method, e.g. `POST`. */
  readonly method: string;
  /** The origin-form target exactly as sent: path and query. */
  readonly target: string;
  /** Header fields in arrival order, names lower-cased. */
  readonly headers: readonly (readonly [string, string])[];
  /** The body (empty when there was none). */
  readonly body: Uint8Array<ArrayBuffer>;
  /** Aborted when the client hangs up (a long-poll leaves with it) or the server closes. */
  readonly signal: AbortSignal;
}

/** An answer: written with our own framing (Content-Length; `connection: close` when it ends). */
export interface RawHttpResponse {
  /** HTTP status. */
  readonly status: number;
  /** Header fields besides the framing ones. */
  readonly headers?: Readonly<Record<string, string>>;
  /** The body. */
  readonly body?: Uint8Array;
  /** End the connection after this answer (a server shutting down). */
  readonly close?: boolean;
}

/** An application served through {@link RawHttpRequest}s. */
export interface RawHttpApp {
  /** Answers one request; a throw is answered 500. */
  raw(request: RawHttpRequest): Promise<RawHttpResponse> | RawHttpResponse;
}

/** The value of header `name` (lower-case) in `request`, the first if repeated. */
export function rawHeader(request: RawHttpRequest, name: string): string | undefined {
  for (const [k, v] of request.headers) if (k === name) return v;
  return undefined;
}
