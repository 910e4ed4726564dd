// JavaScript channel subscriber (componentize-js, world `subscriber` in ../wit), the same
// contract as the Python one (guest/python/src/subscriber.py):
//
//     subscriber <service> [count]
//
// Opens a subscriber on `service` (waits up to 5 s for it), prints `subscribed <service>`, then
// waits for samples with `wasi:io/poll.poll` on the subscriber's pollable (`subscribe()`),
// printing `waiting` right before each call. Each time the pollable is ready it takes every
// queued sample (`receive` until none), reads it in pieces of at most 1 MiB, computes its
// CRC-32 and prints
//
//     sample <index> len=<bytes> crc32=<8 hex digits> segment=<id> offset=<packed u64>
//
// then releases it. It stops after `count` samples, or (`count` 0 or absent) when the
// publisher is gone, with `end <count|disconnected> samples=<n> bytes=<total> polls=<n>
// empty=<polls that found nothing>`. The pollable is dropped before the subscriber. Exit code
// 0 when done; 1 with `subscriber: <why>` on stderr (a WIT error by its case name, e.g.
// `does-not-exist`) when the publisher went away before `count` samples, or on any failure.
import { Subscriber } from 'resmem:memory/channel@0.1.0';
import { poll } from 'wasi:io/poll@0.2.12';
import { getArguments } from 'wasi:cli/environment@0.2.0';

// Bytes copied per host call.
const PIECE = 1n << 20n;
const OPEN_TIMEOUT_MS = 5000;

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

// CRC-32 (zlib's) of `bytes`, continuing from `crc`.
function crc32(bytes, crc) {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

// A WIT error (thrown by a binding with the variant as `payload`) as text.
function describe(e) {
  const p = e && e.payload;
  if (p && p.tag) return p.val === undefined ? p.tag : `${p.tag}(${p.val})`;
  return String(e);
}

const pack = (offset) => (offset.offset << 8n) | BigInt(offset.segment);

function checksum(subscriber, sample) {
  let crc = 0;
  for (let at = 0n; at < sample.len; ) {
    const n = sample.len - at < PIECE ? sample.len - at : PIECE;
    const data = subscriber.read(sample.offset, at, n);
    if (BigInt(data.length) !== n) {
      throw `asked for ${n} bytes at ${pack(sample.offset)}+${at}, got ${data.length}`;
    }
    crc = crc32(data, crc);
    at += n;
  }
  return crc;
}

function subscribe(service, count) {
  let samples = 0;
  let total = 0n;
  let polls = 0;
  let empty = 0;
  let end = null;
  const subscriber = Subscriber.open(service, OPEN_TIMEOUT_MS);
  try {
    const pollable = subscriber.subscribe();
    try {
      console.log(`subscribed ${service}`);
      while (end === null) {
        console.log('waiting');
        const ready = poll([pollable]);
        polls++;
        if (ready.length !== 1 || ready[0] !== 0) {
          throw `poll of one pollable returned [${ready}]`;
        }
        let took = 0;
        while (end === null) {
          let sample;
          try {
            sample = subscriber.receive();
          } catch (e) {
            if (e?.payload?.tag !== 'disconnected') throw e;
            end = 'disconnected';
            took++;
            break;
          }
          if (sample === undefined) break;
          took++;
          const crc = checksum(subscriber, sample);
          console.log(
            `sample ${samples} len=${sample.len} crc32=${crc.toString(16).padStart(8, '0')} ` +
              `segment=${sample.offset.segment} offset=${pack(sample.offset)}`,
          );
          subscriber.release(sample.offset);
          samples++;
          total += sample.len;
          if (count && samples === count) end = 'count';
        }
        if (took === 0) empty++;
      }
    } finally {
      // A child of the subscriber: dropped first.
      pollable[Symbol.dispose]();
    }
  } finally {
    subscriber[Symbol.dispose]();
  }
  console.log(`end ${end} samples=${samples} bytes=${total} polls=${polls} empty=${empty}`);
  if (end === 'disconnected' && count && samples < count) {
    throw `disconnected after ${samples} of ${count} samples`;
  }
}

function main(args) {
  if (args.length < 1 || args.length > 2) throw 'usage: subscriber <service> [count]';
  const count = args.length > 1 ? Number(args[1]) : 0;
  if (!Number.isInteger(count)) throw `count '${args[1]}' is not a number`;
  if (count < 0) throw `count ${count} is negative`;
  subscribe(args[0], count);
}

export const run = {
  run() {
    try {
      main(getArguments().slice(1));
    } catch (e) {
      console.error(`subscriber: ${describe(e)}`);
      throw 'failed';
    }
  },
};
