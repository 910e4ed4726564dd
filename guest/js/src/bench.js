// JavaScript bench guest (componentize-js, world `command` in ../wit): `bench [scale]
// [samples]` times, from inside the guest (performance.now), what a JavaScript guest pays per
// operation across the component boundary, in the format of the Rust bench guest: lines
// `bench <name> <median ns per op>` for pair-64 (allocate + deallocate of 64 bytes),
// pair-64-batch (the same in batches of 64, per chunk) and write-/read-<n> for n = 64, 4096,
// 1048576, then `done`.
import { Memory } from 'resmem:memory/resizable-memory@0.1.0';
import { getArguments } from 'wasi:cli/environment@0.2.0';

function median(values) {
  values.sort((a, b) => a - b);
  return values[values.length >> 1];
}

function measure(name, samples, iters, op) {
  op(1); // warm-up
  const perOp = [];
  for (let s = 0; s < samples; s++) {
    const start = performance.now();
    op(iters);
    perOp.push(((performance.now() - start) * 1e6) / iters);
  }
  console.log(`bench ${name} ${median(perOp).toFixed(1)}`);
}

function bench(scale, samples) {
  const iters = (base) => Math.max(1, Math.floor(base * scale));
  const config = {
    maxChunkLayoutHint: { size: 1n << 20n, align: 8n },
    maxNumberOfChunksHint: 4n,
    allocationStrategy: 'power-of-two',
  };
  const pairs = Memory.create('bench-pairs', config);
  const small = { size: 64n, align: 8n };
  measure('pair-64', samples, iters(2000), (n) => {
    for (let i = 0; i < n; i++) pairs.deallocate(pairs.allocate(small));
  });
  // n is a multiple of 64: n chunks in batches of 64, ns per chunk.
  measure('pair-64-batch', samples, Math.max(1, iters(2000) >> 6) << 6, (n) => {
    for (let i = 0; i < n >> 6; i++) pairs.deallocateMany(pairs.allocateMany(small, 64));
  });
  const io = Memory.create('bench-io', config);
  const chunk = io.allocate({ size: 1n << 20n, align: 8n });
  for (const [size, base] of [[64, 4000], [4096, 2000], [1 << 20, 20]]) {
    const data = new Uint8Array(size);
    for (let i = 0; i < size; i++) data[i] = i & 0xff;
    measure(`write-${size}`, samples, iters(base), (n) => {
      for (let i = 0; i < n; i++) io.write(chunk, 0n, data);
    });
    measure(`read-${size}`, samples, iters(base), (n) => {
      for (let i = 0; i < n; i++) io.read(chunk, 0n, BigInt(size));
    });
  }
  io.deallocate(chunk);
  console.log('done');
}

export const run = {
  run() {
    const args = getArguments().slice(1);
    const scale = args.length > 1 ? Number(args[1]) : 1;
    const samples = args.length > 2 ? Number(args[2]) : 15;
    if (args[0] !== 'bench' || !(scale > 0) || !(samples > 0)) {
      console.error('usage: bench [scale > 0] [samples > 0]');
      throw 'usage';
    }
    bench(scale, samples);
  },
};
