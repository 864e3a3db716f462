#!/usr/bin/env python3
"""Per-SM view of one split-scan call from MAMBA_CUDA_SCAN_BLOCKLOG's file.

Each call in the file starts with a line "call"; then one line per
(batch, chunk, channel block): x, b * nchunks + chunk, SM and µs of its
chunk-state block's start and end, SM and µs of its output block's start and
end (-1 where a phase has no block: the last chunk has no chunk-state block).

Prints, for the chosen call (default: the last): how many blocks of each
sweep each SM ran, when each SM's blocks of a sweep started and ended, the gap
each SM spent between its last chunk-state block and its first output block,
and the resident blocks per SM over time (both sweeps, 1 µs bins).

    blocklog_summary.py FILE [CALL_INDEX]
"""
import collections
import sys


def calls(path):
    out, cur = [], None
    for line in open(path):
        line = line.split()
        if line == ["call"]:
            cur = []
            out.append(cur)
        elif cur is not None and len(line) == 8:
            x, r, sm1, s1, e1, sm2, s2, e2 = line
            cur.append((int(x), int(r), int(sm1), float(s1), float(e1), int(sm2), float(s2), float(e2)))
    return out


def q(vals, f):
    vals = sorted(vals)
    return vals[min(len(vals) - 1, int(f * len(vals)))]


def spread(name, vals):
    if not vals:
        return f"{name}: none"
    return (f"{name}: min {min(vals):.1f} p10 {q(vals, .1):.1f} p50 {q(vals, .5):.1f} "
            f"p90 {q(vals, .9):.1f} max {max(vals):.1f}")


def main():
    cs = calls(sys.argv[1])
    idx = int(sys.argv[2]) if len(sys.argv) > 2 else -1
    rows = cs[idx]
    print(f"{len(cs)} calls in the log; call {idx % len(cs)}: {len(rows)} rows")
    first = collections.defaultdict(list)  # sm -> [(start, end)]
    outp = collections.defaultdict(list)
    for x, r, sm1, s1, e1, sm2, s2, e2 in rows:
        if s1 >= 0 and e1 >= 0:
            first[sm1].append((s1, e1))
        if s2 >= 0 and e2 >= 0:
            outp[sm2].append((s2, e2))
    for name, d in (("chunk-state", first), ("output", outp)):
        counts = collections.Counter(len(v) for v in d.values())
        print(f"{name}: {sum(len(v) for v in d.values())} blocks on {len(d)} SMs; blocks per SM: "
              + ", ".join(f"{k} x{n}" for k, n in sorted(counts.items())))
        print("  " + spread("block start", [s for v in d.values() for s, _ in v]))
        print("  " + spread("block end", [e for v in d.values() for _, e in v]))
        print("  " + spread("block duration", [e - s for v in d.values() for s, e in v]))
        print("  " + spread("SM's last end", [max(e for _, e in v) for v in d.values()]))
        print("  " + spread("SM's first end", [min(e for _, e in v) for v in d.values()]))
        print("  " + spread("SM's last start", [max(s for s, _ in v) for v in d.values()]))
    gaps = [min(s for s, _ in outp[sm]) - max(e for _, e in first[sm]) for sm in first if sm in outp]
    print(spread("SM gap (first output start - last chunk-state end)", gaps))
    # The SMs whose output ended last: what they ran.
    last = sorted(outp, key=lambda sm: -max(e for _, e in outp[sm]))[:4]
    for sm in last:
        f = sorted(first.get(sm, []))
        o = sorted(outp[sm])
        print(f"  SM {sm}: chunk-state " + " ".join(f"[{s:.1f},{e:.1f}]" for s, e in f)
              + " output " + " ".join(f"[{s:.1f},{e:.1f}]" for s, e in o))
    end = max(e for v in outp.values() for _, e in v)
    nsm = max(len(set(first) | set(outp)), 1)
    print("µs: resident chunk-state / output blocks per SM (mean over SMs)")
    line = []
    for t in range(int(end) + 1):
        a = sum(1 for v in first.values() for s, e in v if s <= t + 0.5 < e) / nsm
        b = sum(1 for v in outp.values() for s, e in v if s <= t + 0.5 < e) / nsm
        line.append(f"{t}:{a:.1f}/{b:.1f}")
    for i in range(0, len(line), 8):
        print("  " + "  ".join(line[i:i + 8]))


if __name__ == "__main__":
    main()
