// JavaScript filter plugin (componentize-js, world `plugin` of wit/resmem.wit).
//
// `filter.process(input)` reads the input buffer through a read-only view of `input.memory`
// (views are cached per memory name and reopened once when a cached one no longer knows the
// offset) and writes into a chunk of its own memory `js-filter-out` (created on first use)
//
//     out[i] = rotl8(in[i], 1) ^ (i & 0xff)
//
// a bit rotation mixed with the byte's position, so a byte moved, dropped or read from the
// wrong place is caught. The previous output chunk is freed at the start of the next call
// (the host reads an output before calling again). An empty input gives no output.
import { Memory, View } from 'resmem:memory/resizable-memory@0.1.0';

export const OUTPUT = 'js-filter-out';
// Bytes copied per host call.
const PIECE = 1n << 20n;
const OPEN_TIMEOUT_MS = 5000;

const views = new Map();
let output = null;
let previous = null;

// A WIT error (thrown by a binding with the variant as `payload`) as text.
function describe(e) {
  const p = e && e.payload;
  if (p && p.tag) return p.val === undefined ? p.tag : `${p.tag}(${p.val})`;
  return String(e);
}

function fail(what, e) {
  throw `${what}: ${describe(e)}`;
}

function registeredView(name, offset) {
  let cached = views.get(name);
  if (cached) {
    try {
      cached.register(offset);
      return cached;
    } catch (e) {
      // May be a view of an earlier memory of the same name: reopen it once.
      views.delete(name);
    }
  }
  let view;
  try {
    view = View.open(name, 'read', OPEN_TIMEOUT_MS);
  } catch (e) {
    fail(`open input memory ${JSON.stringify(name)}`, e);
  }
  views.set(name, view);
  try {
    view.register(offset);
  } catch (e) {
    fail(`register input ${offset.segment}:${offset.offset} in ${JSON.stringify(name)}`, e);
  }
  return view;
}

function outputMemory() {
  if (output === null) {
    try {
      output = Memory.create(OUTPUT, {
        maxChunkLayoutHint: { size: 4096n, align: 8n },
        maxNumberOfChunksHint: 4n,
        allocationStrategy: 'power-of-two',
      });
    } catch (e) {
      fail(`create the output memory ${OUTPUT}`, e);
    }
  }
  return output;
}

function transform(bytes, at) {
  const base = Number(at & 0xffn);
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    bytes[i] = (((b << 1) | (b >> 7)) & 0xff) ^ ((base + i) & 0xff);
  }
  return bytes;
}

export const filter = {
  process(input) {
    if (previous !== null) {
      try {
        output.deallocate(previous);
      } catch (e) {
        fail('free the previous output', e);
      }
      previous = null;
    }
    const len = input.len;
    if (len === 0n) return undefined;
    const view = registeredView(input.memory, input.offset);
    try {
      const memory = outputMemory();
      let chunk;
      try {
        chunk = memory.allocate({ size: len, align: 8n });
      } catch (e) {
        fail(`allocate ${len} output bytes`, e);
      }
      previous = chunk;
      for (let at = 0n; at < len; at += PIECE) {
        const n = len - at < PIECE ? len - at : PIECE;
        let bytes;
        try {
          bytes = view.read(input.offset, at, n);
        } catch (e) {
          fail(`read ${n} input bytes at ${at}`, e);
        }
        if (BigInt(bytes.length) !== n) throw `asked for ${n} input bytes, got ${bytes.length}`;
        try {
          memory.write(chunk, at, transform(bytes, at));
        } catch (e) {
          fail(`write ${n} output bytes at ${at}`, e);
        }
      }
      return { memory: OUTPUT, offset: chunk, len };
    } finally {
      try {
        view.unregister(input.offset);
      } catch (e) {
        // The offset was registered above; nothing to undo if the host already forgot it.
      }
    }
  },
};
