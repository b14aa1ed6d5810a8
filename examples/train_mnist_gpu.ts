/**
 * @module
 * `train_mnist.ts --device cuda`: the same recipe (784-hidden-10 MLP with GELU, AdamW, cosine decay,
 * random shifts, the same initial weights) with the model on the GPU ({@link GpuMlp}), gradients
 * averaged by {@link DistributedDataParallel} in buckets that are views of the model's flat gradient
 * (CUDA IPC when the ranks share a host's GPUs, overlapping backward). Rank r uses GPU
 * `LOCAL_RANK % devices`, so several ranks may share one GPU.
 */

import { initProcessGroup, ReduceOp } from "../mod.ts";
import { cudaAvailable, deviceCount, deviceInfo, GpuTensor, useDevice } from "../gpu/mod.ts";
import { argmaxGpu, GpuAdamW, GpuMlp, seededRandom, softmaxCrossEntropyGpu } from "../ddp/nn/mod.ts";
import { DistributedDataParallel, DistributedSampler } from "../ddp/mod.ts";
import { readEnv } from "../config.ts";
import { loadMnist, PIXELS, putShifted } from "./mnist_data.ts";

/** Settings of {@link trainMnistGpu} (the flags of train_mnist.ts). */
export interface GpuTrainOptions {
  /** Epochs. */
  epochs: number;
  /** Batch per rank. */
  batch: number;
  /** Peak learning rate. */
  lr: number;
  /** Hidden width. */
  hidden: number;
  /** Largest random shift in pixels. */
  maxShift: number;
}

/** Trains on the GPU and returns the process exit code (1 with a message when there is no GPU). */
export async function trainMnistGpu(o: GpuTrainOptions): Promise<number> {
  if (!cudaAvailable()) {
    console.error(
      "--device cuda: no usable CUDA GPU here (cudaAvailable() is false: libcuda.so.1 from the NVIDIA " +
        "driver did not load, or it sees no device). Install the driver or run without --device cuda.",
    );
    return 1;
  }
  const env = readEnv();
  const device = (env.localRank ?? 0) % deviceCount();
  useDevice(device);
  const pg = await initProcessGroup();
  const log = (msg: string) => pg.rank === 0 && console.log(msg);
  const t0 = performance.now();
  const { train, test } = loadMnist();
  log(
    `data: ${train.count} training and ${test.count} test digits; device: ${
      deviceInfo(device).name
    }; ranks: ${pg.size}`,
  );

  const model = new GpuMlp([PIXELS, o.hidden, 10], { device, seeds: [1, 2] });
  const ddp = await DistributedDataParallel.create(model, pg, { gradientAsBucketView: true });
  const opt = new GpuAdamW({ lr: o.lr, weightDecay: 1e-4 });
  const sampler = new DistributedSampler(train.count, {
    numReplicas: pg.size,
    rank: pg.rank,
    shuffle: true,
    seed: 0,
  });
  const rand = seededRandom(1000 + pg.rank);
  const x = new Float32Array(o.batch * PIXELS), y = new Int32Array(o.batch);
  const dx = GpuTensor.empty("f32", [o.batch, PIXELS], device), dy = GpuTensor.empty("i32", o.batch, device);

  const testAccuracy = async (): Promise<number> => {
    let correct = 0;
    const ids: number[] = [];
    for (let i = pg.rank; i < test.count; i += pg.size) ids.push(i);
    for (let s = 0; s < ids.length; s += 256) {
      const part = ids.slice(s, s + 256);
      const xb = new Float32Array(part.length * PIXELS);
      part.forEach((id, k) => xb.set(test.images.subarray(id * PIXELS, (id + 1) * PIXELS), k * PIXELS));
      using gx = GpuTensor.fromHost(xb, { device });
      const pred = argmaxGpu(model.forward(gx, part.length), part.length, 10);
      part.forEach((id, k) => correct += pred[k] === test.labels[id] ? 1 : 0);
    }
    const c = new Float64Array([correct]);
    await pg.allReduce(c, { op: ReduceOp.SUM });
    return c[0] / test.count;
  };

  let acc = 0;
  const tTrain = performance.now();
  for (let epoch = 0; epoch < o.epochs; epoch++) {
    sampler.setEpoch(epoch);
    opt.lr = o.lr * 0.5 * (1 + Math.cos(Math.PI * epoch / o.epochs));
    const order = [...sampler];
    let lossSum = 0, steps = 0;
    for (let s = 0; s + o.batch <= order.length; s += o.batch) {
      for (let k = 0; k < o.batch; k++) {
        putShifted(train.images, order[s + k], x, k, o.maxShift, rand);
        y[k] = train.labels[order[s + k]];
      }
      dx.copyFromHost(x);
      dy.copyFromHost(y);
      ddp.zeroGrad();
      const { loss, grad } = softmaxCrossEntropyGpu(model.forward(dx, o.batch), dy, o.batch, 10);
      model.backward(grad, o.batch); // each layer's gradient starts its bucket's allreduce
      grad.free();
      await ddp.finishBackward();
      opt.step(model.flatData, model.flatGrad);
      lossSum += loss;
      steps++;
    }
    acc = await testAccuracy();
    log(
      `epoch ${epoch + 1}/${o.epochs}: loss ${(lossSum / steps).toFixed(4)}, test accuracy ${
        (acc * 100).toFixed(2)
      }%, ` +
        `${((performance.now() - tTrain) / 1000).toFixed(1)} s`,
    );
  }
  log(
    `final: test accuracy ${
      (acc * 100).toFixed(2)
    }% after ${o.epochs} epochs on ${pg.size} ranks (GPU); training ` +
      `${((performance.now() - tTrain) / 1000).toFixed(1)} s, total ${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s`,
  );
  await ddp.close();
  dx.free();
  dy.free();
  opt.free();
  model.free();
  await pg.destroy();
  return 0;
}
