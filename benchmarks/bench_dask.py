"""csoftmax.dask: cross-entropy + gradient on a distributed.LocalCluster.

    python benchmarks/bench_dask.py                # the issue's problem (262144 x 32000 float32)
    python benchmarks/bench_dask.py --avx2         # csoftmax's kernels capped to AVX2
    python benchmarks/bench_dask.py --smoke        # tiny sizes, 1 rep (a test runs this)

Part 1, "generated": logits (N, C) float32 made on the workers by
``da.random.default_rng(0).random(dtype=float32)`` scaled to [-4, 4) -- never on the
client -- with the class axis in 4 chunks and rows in chunks of --row-chunk, labels
likewise; per run the mean loss and the whole gradient are computed, the gradient
written to a sink that drops it (``da.store`` to an object whose ``__setitem__`` does
nothing), so no result is gathered but the loss.  Variants:
  csoftmax     csoftmax.dask.cross_entropy_with_grad
  plain-dask   the same with dask.array operations: max, exp, sum, log, a one-hot
               take of the target logit, e / s - onehot
  gen-only     the generation alone, stored to the sink (the floor of both)
on a LocalCluster of 1 and of 2 worker processes, one thread each (rounds alternate
the variants; medians reported).  Peak memory per worker: VmHWM of each worker
process, reset before the variant's first run.

Part 2, "in memory": a problem that fits (--mem-rows x C): the logits persisted on
the cluster, then csoftmax.dask's loss + gradient, against csoftmax in this process
on the same array (``cross_entropy_with_grad(out=)`` into a touched buffer) with the
same number of threads (1 for 1 worker, 2 for 2 workers), once with ``out=`` a touched
buffer and once allocating its gradient (as the Dask blocks do).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time


class _Sink:
    """A da.store target that drops what it is given."""

    def __setitem__(self, key, value):
        pass


def _peak_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _problem(da, np, n, c, row_chunk, cchunks):
    rng = da.random.default_rng(0)
    x = rng.random((n, c), dtype=np.float32, chunks=(row_chunk, cchunks)) * np.float32(8) \
        - np.float32(4)
    lab = rng.integers(0, c, (n,), chunks=(row_chunk,))
    return x, lab


def _variant(name, x, lab, da, np):
    import csoftmax.dask as cd
    n, c = x.shape
    if name == "csoftmax":
        loss, grad = cd.cross_entropy_with_grad(x, lab)
    elif name == "plain-dask":
        m = x.max(axis=1, keepdims=True)
        e = da.exp(x - m)
        s = e.sum(axis=1, keepdims=True)
        lse = m[:, 0] + da.log(s[:, 0])
        onehot = da.arange(c, chunks=x.chunks[1])[None, :] == lab[:, None]
        zt = da.where(onehot, x, np.float32(0)).sum(axis=1)
        loss = (lse - zt).mean()
        grad = (e / s - onehot) / np.float32(n)
    elif name == "gen-only":
        loss, grad = x[:1, :1].sum(), x
    else:
        raise ValueError(name)
    return loss, da.store(grad, _Sink(), lock=False, compute=False)


def _cluster(nworkers):
    from distributed import Client, LocalCluster
    lc = LocalCluster(n_workers=nworkers, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR,
                      memory_limit=0)
    return lc, Client(lc)


def _time(client, objs, reps):
    ts = []
    out = None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = client.compute(objs, sync=True)
        ts.append(time.perf_counter() - t0)
    return ts, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=262144)
    ap.add_argument("--classes", type=int, default=32000)
    ap.add_argument("--row-chunk", type=int, default=2048)
    ap.add_argument("--class-chunks", type=int, default=4)
    ap.add_argument("--mem-rows", type=int, default=32768)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--avx2", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    a = ap.parse_args(argv)
    if a.smoke:
        a.rows, a.classes, a.row_chunk, a.mem_rows, a.rounds = 512, 300, 128, 256, 1
    if a.avx2:
        os.environ["CSOFTMAX_ISA"] = "avx2"      # inherited by the worker processes
    import numpy as np
    import dask.array as da
    import csoftmax
    from csoftmax._bench import _cpu_name

    cfg = csoftmax.show_config()
    cch = a.classes // a.class_chunks
    cchunks = tuple([cch] * (a.class_chunks - 1) + [a.classes - cch * (a.class_chunks - 1)])
    print(f"cpu: {_cpu_name()} ({os.cpu_count()} cores); csoftmax isa {cfg['isa']} "
          f"(available {cfg['available']}); python {platform.python_version()}, "
          f"numpy {np.__version__}, dask {__import__('dask').__version__}")
    print(f"problem: ({a.rows}, {a.classes}) float32, rows in chunks of {a.row_chunk}, "
          f"classes in {a.class_chunks} chunks {cchunks}; {a.rounds} rounds, medians")
    res = {"cpu": _cpu_name(), "isa": cfg["isa"], "generated": {}, "in_memory": {}}
    variants = ["csoftmax", "plain-dask", "gen-only"]
    for nw in [int(v) for v in a.workers.split(",")]:
        lc, client = _cluster(nw)
        try:
            isa_w = client.run(lambda: __import__("csoftmax").show_config()["isa"])
            times = {v: [] for v in variants}
            peaks = {v: 0.0 for v in variants}
            losses = {}
            for r in range(a.rounds):
                for v in variants:
                    x, lab = _problem(da, np, a.rows, a.classes, a.row_chunk, cchunks)
                    objs = list(_variant(v, x, lab, da, np))
                    client.run(_reset_peak)
                    ts, out = _time(client, objs, 1)
                    times[v] += ts
                    peaks[v] = max(peaks[v], max(client.run(_peak_mib).values()))
                    losses[v] = float(out[0])
            med = {v: statistics.median(times[v]) for v in variants}
            res["generated"][nw] = {"median_s": med, "peak_worker_mib": peaks,
                                    "loss": losses, "worker_isa": list(isa_w.values())}
            print(f"\n== generated, {nw} worker process(es) x 1 thread (worker isa "
                  f"{sorted(set(isa_w.values()))})")
            print(f"{'variant':12s} {'median s':>9s} {'runs':>24s} {'peak/worker MiB':>16s}"
                  f" {'loss':>10s}")
            for v in variants:
                runs = " ".join(f"{t:.1f}" for t in times[v])
                print(f"{v:12s} {med[v]:9.2f} {runs:>24s} {peaks[v]:16.0f} {losses[v]:10.5f}")
            print(f"plain-dask / csoftmax: {med['plain-dask'] / med['csoftmax']:.2f}x; beyond the "
                  f"generation (each minus gen-only): "
                  f"{(med['plain-dask'] - med['gen-only']) / (med['csoftmax'] - med['gen-only']):.2f}x")

            # part 2: in memory
            x, lab = _problem(da, np, a.mem_rows, a.classes, a.row_chunk, cchunks)
            x, lab = client.persist([x, lab])
            from distributed import wait
            wait([x, lab])
            import csoftmax.dask as cd
            dts = []
            for _ in range(a.rounds):
                loss, grad = cd.cross_entropy_with_grad(x, lab)
                objs = [loss, da.store(grad, _Sink(), lock=False, compute=False)]
                t, _ = _time(client, objs, 1)
                dts += t
            xl = x.compute()
            ll = lab.compute()
            del x, lab
            csoftmax.set_num_threads(nw)
            if a.avx2:
                csoftmax._core.isa_set("avx2")
            out = np.ones_like(xl)
            sts, sas = [], []
            for _ in range(a.rounds):
                t0 = time.perf_counter()
                csoftmax.cross_entropy_with_grad(xl, ll, out=out)
                sts.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                g = csoftmax.cross_entropy_with_grad(xl, ll)[1]     # allocates its gradient
                sas.append(time.perf_counter() - t0)
                del g
            del xl, out
            md, ms, ma = statistics.median(dts), statistics.median(sts), statistics.median(sas)
            res["in_memory"][nw] = {"dask_s": md, "single_process_out_s": ms,
                                    "single_process_alloc_s": ma}
            print(f"in memory ({a.mem_rows}, {a.classes}), {nw} thread(s): csoftmax.dask "
                  f"{md:.3f} s; single-process csoftmax with out= {ms:.3f} s ({md / ms:.2f}x), "
                  f"allocating its gradient {ma:.3f} s ({md / ma:.2f}x)")
        finally:
            client.close()
            lc.close()
    g = res["generated"]
    if 1 in g and 2 in g:
        s = g[1]["median_s"]["csoftmax"] / g[2]["median_s"]["csoftmax"]
        print(f"\ncsoftmax 1 worker / 2 workers: {s:.2f}x")
        res["scaling_1_to_2"] = s
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
