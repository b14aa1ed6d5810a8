/**
 * @module
 * Which host this process runs on, as a string that is equal for processes that can share memory
 * and different otherwise: the host name plus the kernel's boot id. Used to find same-host peers.
 */

/**
 * This host's identity: `override` when given (CHOIR_HOST_ID, e.g. to split one machine into
 * "hosts" in tests), else `<hostname>/<boot id>`. Without the permissions to read them it returns
 * a random id, so that the process shares memory with nobody rather than guessing wrong.
 */
export function hostId(override?: string): string {
  if (override) return override;
  let name = "";
  let boot = "";
  try {
    name = Deno.hostname();
  } catch { /* no --allow-sys */ }
  try {
    boot = Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim();
  } catch { /* no --allow-read, or not Linux */ }
  if (!name || !boot) return `unknown/${crypto.randomUUID()}`;
  return `${name}/${boot}`;
}
