/**
 * @module
 * Which host this process runs on, as a string that is equal for processes that can share memory
 * and different otherwise: the host name plus the kernel's boot id. Used to find same-host peers.
 */

import { libc } from "./shm/libc.ts";

/**
 * This host's identity: `override` when given (CHOIR_HOST_ID, e.g. to split one machine into
 * "hosts" in tests), else `<hostname>/<boot id>`. Deno lets `/proc` be read only with `--allow-all`,
 * so the boot id (and the host name, without `--allow-sys=hostname`) is read through libc when
 * `--allow-ffi` is granted (the shm transport needs it anyway). Without either it returns a random
 * id, so that the process shares memory with nobody rather than guessing wrong.
 */
export function hostId(override?: string): string {
  if (override) return override;
  let name = "";
  let boot = "";
  // Ask first: on a terminal, an unpermitted call would prompt instead of failing.
  const granted = (d: Deno.PermissionDescriptor) => Deno.permissions.querySync(d).state === "granted";
  try {
    if (granted({ name: "sys", kind: "hostname" })) name = Deno.hostname();
  } catch { /* refused anyway */ }
  try {
    if (granted({ name: "read", path: BOOT_ID })) boot = Deno.readTextFileSync(BOOT_ID).trim();
  } catch { /* Deno guards /proc behind --allow-all; or not Linux */ }
  if (!name || !boot) [name, boot] = [name || viaLibc("name"), boot || viaLibc("boot")];
  if (!name || !boot) return `${UNKNOWN}${crypto.randomUUID()}`;
  return `${name}/${boot}`;
}

/** This host's name, found as {@link hostId} finds it; "" when the permissions do not allow it. */
export function hostName(): string {
  try {
    if (Deno.permissions.querySync({ name: "sys", kind: "hostname" }).state === "granted") {
      return Deno.hostname();
    }
  } catch { /* refused anyway */ }
  return viaLibc("name");
}

/** The prefix of a host id made up for want of permissions. */
export const UNKNOWN = "unknown/";

const BOOT_ID = "/proc/sys/kernel/random/boot_id";

/** The host name or the boot id through libc; "" without FFI permission or on failure. */
function viaLibc(what: "name" | "boot"): string {
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return "";
  try {
    const { fn } = libc();
    const buf = new Uint8Array(256);
    if (what === "name") {
      if (fn.gethostname(buf, BigInt(buf.length)) !== 0) return "";
      return new TextDecoder().decode(buf.subarray(0, buf.indexOf(0))).trim();
    }
    const fd = fn.open(new TextEncoder().encode(BOOT_ID + "\0"), 0);
    if (fd < 0) return "";
    try {
      const n = Number(fn.read(fd, buf, BigInt(buf.length)));
      return n > 0 ? new TextDecoder().decode(buf.subarray(0, n)).trim() : "";
    } finally {
      fn.close(fd);
    }
  } catch {
    return "";
  }
}
