/**
 * @module
 * `--log-dir` files are private to their user: created 0600 (in directories created 0700), whatever
 * the umask, since a rank's output may hold what the job reads and prints.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { RankLogs } from "../../launch/elastic/rank_logs.ts";

Deno.test({
  name: "rank logs: a log file is created 0600, its new directories 0700",
  ignore: Deno.build.os === "windows",
  fn() {
    const top = Deno.makeTempDirSync({ prefix: "choir-logs-" });
    const dir = join(top, "run", "round_0");
    const logs = new RankLogs(dir, () => {});
    try {
      logs.lines(0, "stdout", ["hello"]);
      assert.equal(Deno.readTextFileSync(join(dir, "rank_0.log")), "hello\n");
      assert.equal(Deno.statSync(join(dir, "rank_0.log")).mode! & 0o777, 0o600);
      assert.equal(Deno.statSync(dir).mode! & 0o777, 0o700);
      assert.equal(Deno.statSync(join(top, "run")).mode! & 0o777, 0o700);
    } finally {
      logs.close();
      Deno.removeSync(top, { recursive: true });
    }
  },
});
