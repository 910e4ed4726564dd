"""A Python stage of a resmem pipeline, zero-copy on both sides.

Every frame of service IN is read in place as a numpy array (no copy out of shared memory),
its payload XORed with KEY straight into a loan of service OUT (no copy in), and sent on. The
frame format is the guests' (guest/sdk/src/frame.rs): a 24-byte header (sequence number, tag,
stamp) that is passed through, then the payload. One line per frame goes to stdout:
``frame <seq> <len> <sum of the incoming payload bytes>``, then ``done count=<n>``.

    python filter.py IN OUT COUNT KEY [--namespace NS] [--subscribers N]
"""

import argparse
import sys

import numpy as np

import resmem

HEADER = 24


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inp", metavar="IN")
    parser.add_argument("out", metavar="OUT")
    parser.add_argument("count", type=int)
    parser.add_argument("key", type=int)
    parser.add_argument("--namespace")
    parser.add_argument("--subscribers", type=int, default=1)
    args = parser.parse_args()

    with resmem.Publisher(args.out, namespace=args.namespace, overflow="block") as publisher:
        print("created", flush=True)
        if publisher.wait_for_subscribers(args.subscribers, timeout=60) < args.subscribers:
            print(f"error: fewer than {args.subscribers} subscriber(s) on {args.out}", flush=True)
            return 1
        with resmem.Subscriber(args.inp, namespace=args.namespace, timeout=60) as subscriber:
            print("joined", flush=True)
            n = 0
            for _, sample in zip(range(args.count), subscriber):
                with sample:
                    src = np.frombuffer(sample, dtype=np.uint8)
                    loan = publisher.loan(len(src))
                    dst = np.frombuffer(loan, dtype=np.uint8)
                    dst[:HEADER] = src[:HEADER]
                    np.bitwise_xor(src[HEADER:], args.key, out=dst[HEADER:])
                    seq = int(src[:8].view("<u8")[0])
                    total = int(src[HEADER:].sum(dtype=np.uint64))
                    del src, dst  # the buffers must go before the sample and the loan do
                print(f"frame {seq} {len(loan)} {total}", flush=True)
                publisher.send(loan)
                n += 1
            print(f"done count={n}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
