/**
 * @module
 * `Work`: the handle of an operation started with `{ async: true }`, like torch.distributed's Work.
 * It records how the operation ended so nothing is lost when nobody waits; running it is the group's job.
 */

import { CollectiveTimeoutError } from "../errors.ts";

/**
 * An operation in flight. `wait()` resolves when it has completed (with the value of an object
 * collective, `undefined` otherwise) and rejects with its typed error; `isCompleted()` and
 * `exception()` look without waiting. A failure is kept even if nobody waits for it.
 */
export class Work<T = void> {
  /** The operation's name (`allReduce`, `gatherObject`, ...). */
  readonly op: string;
  /** The rank that issued it. */
  readonly rank: number;
  readonly #done: Promise<T>;
  #state: "running" | "ok" | "failed" = "running";
  #value: T | undefined;
  #error: Error | null = null;

  /** Wraps the promise of an operation already started. Groups create Works; users receive them. */
  constructor(running: Promise<T>, op: string, rank: number) {
    this.op = op;
    this.rank = rank;
    this.#done = running.then(
      (v) => {
        this.#state = "ok";
        this.#value = v;
        return v;
      },
      (e: unknown) => {
        this.#state = "failed";
        this.#error = e instanceof Error ? e : new Error(String(e));
        throw this.#error;
      },
    );
    // The failure is kept in exception(); an unobserved Work must not become an unhandled rejection.
    this.#done.catch(() => {});
  }

  /**
   * Resolves with the operation's result once it has completed; rejects with its error. With
   * `timeoutMs`, rejects with `CollectiveTimeoutError` if it has not completed by then; the
   * operation itself keeps running under its own timeout (the group's, or the call's `timeoutMs`).
   */
  wait(timeoutMs?: number): Promise<T> {
    if (timeoutMs === undefined || this.#state !== "running") return this.#done;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new CollectiveTimeoutError(`wait for ${this.op} gave up`, timeoutMs, {
              rank: this.rank,
              op: this.op,
            }),
          ),
        timeoutMs,
      );
    });
    return Promise.race([this.#done, late]).finally(() => clearTimeout(timer));
  }

  /** Whether the operation has ended, successfully or not. */
  isCompleted(): boolean {
    return this.#state !== "running";
  }

  /** Whether the operation has ended successfully. */
  isSuccess(): boolean {
    return this.#state === "ok";
  }

  /** The error the operation failed with, or null while it runs or after it succeeded. */
  exception(): Error | null {
    return this.#error;
  }

  /** The operation's result once it succeeded (the value of an object collective), else undefined. */
  get result(): T | undefined {
    return this.#value;
  }
}
