/**
 * @module
 * Scheduler detection: readEnv() over the variables SLURM, Open MPI's mpirun, PMI and a Kubernetes
 * Indexed Job set (fake getters, no process env), and SLURM's compressed host lists.
 */

import assert from "node:assert/strict";
import { readEnv } from "../config.ts";
import { expandHostlist, firstHost, PORT_BASE } from "../schedulers.ts";

const envOf = (vars: Record<string, string>) => readEnv((name) => vars[name]);

Deno.test("expandHostlist / firstHost: ranges, lists, zero padding, several brackets", () => {
  assert.deepEqual(expandHostlist("node[01-03,07]"), ["node01", "node02", "node03", "node07"]);
  assert.deepEqual(expandHostlist("a1,b[2-3],c"), ["a1", "b2", "b3", "c"]);
  assert.deepEqual(expandHostlist("rack[1-2]-n[8-9]"), ["rack1-n8", "rack1-n9", "rack2-n8", "rack2-n9"]);
  assert.deepEqual(expandHostlist("gpu[098-101]"), ["gpu098", "gpu099", "gpu100", "gpu101"]);
  assert.equal(firstHost("node[01-03,07]"), "node01");
  assert.equal(firstHost("login5"), "login5");
  assert.equal(firstHost("x[7],y[1-2]"), "x7");
});

Deno.test("readEnv: SLURM srun task", () => {
  const e = envOf({
    SLURM_PROCID: "5",
    SLURM_NTASKS: "8",
    SLURM_LOCALID: "1",
    SLURM_TASKS_PER_NODE: "4(x2)",
    SLURM_JOB_NODELIST: "node[07-08]",
    SLURM_JOB_ID: "1234",
    SLURM_STEP_ID: "0",
  });
  assert.equal(e.scheduler, "slurm");
  assert.deepEqual([e.rank, e.worldSize, e.localRank, e.localWorldSize], [5, 8, 1, 4]);
  assert.equal(e.masterAddr, "node07");
  assert.ok(e.masterPort! >= PORT_BASE && e.masterPort! < PORT_BASE + 10000);
  assert.equal(e.token, "slurm-1234-0");
  assert.equal(e.storeExternal, undefined); // rank 0 serves the store
  // Explicit variables win; with RANK and WORLD_SIZE set the scheduler is not consulted at all.
  const f = envOf({ SLURM_PROCID: "5", SLURM_NTASKS: "8", MASTER_PORT: "29555", CHOIR_TOKEN: "t" });
  assert.deepEqual([f.rank, f.masterPort, f.token], [5, 29555, "t"]);
  const g = envOf({ SLURM_PROCID: "5", SLURM_NTASKS: "8", RANK: "1", WORLD_SIZE: "2" });
  assert.deepEqual([g.rank, g.worldSize, g.scheduler], [1, 2, undefined]);
});

Deno.test("readEnv: Open MPI mpirun, one node and several", () => {
  const vars = {
    OMPI_COMM_WORLD_RANK: "3",
    OMPI_COMM_WORLD_SIZE: "4",
    OMPI_COMM_WORLD_LOCAL_RANK: "3",
    OMPI_COMM_WORLD_LOCAL_SIZE: "4",
    OMPI_MCA_ess_base_jobid: "1207500801",
    OMPI_MCA_orte_precondition_transports: "573f83dbd4261f60-aed7d3a7efae86e9",
    OMPI_MCA_orte_num_nodes: "1",
    OMPI_MCA_orte_hnp_uri: "1207500800.0;tcp://192.0.2.2:46117;tcp6://[fd00::2]:38835",
  };
  const e = envOf(vars);
  assert.equal(e.scheduler, "openmpi");
  assert.deepEqual([e.rank, e.worldSize, e.localRank, e.localWorldSize], [3, 4, 3, 4]);
  assert.equal(e.masterAddr, "127.0.0.1");
  assert.equal(e.token, "ompi-573f83dbd4261f60-aed7d3a7efae86e9");
  assert.equal(envOf({ ...vars, OMPI_COMM_WORLD_RANK: "0" }).masterPort, e.masterPort);
  assert.equal(envOf({ ...vars, OMPI_MCA_orte_num_nodes: "2" }).masterAddr, "192.0.2.2");
});

Deno.test("readEnv: PMI (hydra) and a Kubernetes Indexed Job", () => {
  const p = envOf({ PMI_RANK: "2", PMI_SIZE: "3", MPI_LOCALRANKID: "0", MPI_LOCALNRANKS: "1" });
  assert.equal(p.scheduler, "pmi");
  assert.deepEqual([p.rank, p.worldSize, p.localRank, p.localWorldSize], [2, 3, 0, 1]);
  const k = envOf({
    JOB_COMPLETION_INDEX: "2",
    HOSTNAME: "train-2",
    WORLD_SIZE: "4",
    CHOIR_K8S_SERVICE: "train-svc",
  });
  assert.equal(k.scheduler, "kubernetes");
  assert.deepEqual([k.rank, k.worldSize, k.localRank, k.localWorldSize], [2, 4, 0, 1]);
  assert.equal(k.masterAddr, "train-0.train-svc");
  assert.equal(k.masterPort, 29500);
  assert.equal(envOf({}).scheduler, undefined);
});
