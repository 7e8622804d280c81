"""Benchmark harness shared by ``python -m csoftmax [bench]`` and ``benchmarks/``.

Timing rules (the machine is shared and noisy): every figure is the median of
repeated calls; competitors are timed side by side in one process, interleaved
round-robin so drift hits all of them alike; "cold" runs rotate over enough
input copies (>= 96 MiB in total) that each call reads from DRAM, not cache.
Floors measured in the same run: ``copy`` = ``np.copyto`` over the logits-sized
buffers, ``read`` = ``np.max`` over the flattened logits.

Two runs: ``run_bench`` (a table per N x C shape, every peer) and
``run_sweep`` (float32 throughput against the number of classes C at a fixed
N*C, the data of ``csoftmax bench --plot``; ``plot_sweep`` draws it).
``csoftmax bench --layouts`` (``_bench_layouts``) and ``--losses``
(``_bench_losses``, the losses of issue 16 with its targets) are further runs.
Matplotlib is imported only inside ``plot_sweep`` (``pip install
"csoftmax[bench]"``); nothing here needs it otherwise.
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Iterator, TextIO

import numpy as np

import csoftmax
from csoftmax import reference

COLD_BYTES = 96 << 20


def _median_ms(fns: dict[Any, Callable[[int], object]], reps: int, min_time: float = 0.0):
    """Interleaved medians (ms) for several callables taking a rotation index.

    The index grows by one on every call (not once per round), so callables that
    read ``copies[i % k]`` never read the copy the previous call just read: with
    several functions per round, each call finds its input cold."""
    times: dict[Any, list[float]] = {k: [] for k in fns}
    j = 0
    for f in fns.values():          # warm-up (first-touch of outputs, JIT of peers)
        f(j)
        j += 1
    t_start = time.perf_counter()
    i = 0
    gc.disable()
    try:
        while i < reps or (time.perf_counter() - t_start) < min_time:
            for k, f in fns.items():
                j += 1
                t0 = time.perf_counter()
                f(j)
                times[k].append(time.perf_counter() - t0)
            i += 1
            if i >= 10 * reps:
                break
    finally:
        gc.enable()
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def _copies(x: np.ndarray, cold: bool) -> list[np.ndarray]:
    n = 1 if not cold else max(1, -(-COLD_BYTES // max(x.nbytes, 1)))
    return [x] + [x.copy() for _ in range(n - 1)]


# ----------------------------------------------------------------------------- peers

def numpy_xent_with_grad(z: np.ndarray, labels: np.ndarray):
    """The hand-rolled NumPy loss + gradient a user would write (input dtype)."""
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    lse = np.log(s) + m
    n = z.shape[0]
    loss = (lse[:, 0] - z[np.arange(n), labels]).mean()
    g = e / s
    g[np.arange(n), labels] -= 1
    g /= n
    return loss, g


def numpy_logsumexp(z: np.ndarray):
    m = z.max(axis=1, keepdims=True)
    return np.log(np.exp(z - m).sum(axis=1)) + m[:, 0]


def scipy_xent_with_grad(z: np.ndarray, labels: np.ndarray):
    """The same loss + gradient written with SciPy: ``log_softmax``, then
    ``exp`` of it as the softmax (input dtype)."""
    import scipy.special as ss

    n = z.shape[0]
    ls = ss.log_softmax(z, axis=1)
    loss = -ls[np.arange(n), labels].mean()
    g = np.exp(ls)
    g[np.arange(n), labels] -= 1
    g /= n
    return loss, g


#: csoftmax's kernel path -> the peers' own ISA caps, so that on a machine
#: with AVX-512 a forced lower path (CSOFTMAX_ISA=avx2) is compared with peers
#: on the same instructions: XLA's --xla_cpu_max_isa, PyTorch's
#: ATEN_CPU_CAPABILITY (both read once, when the library starts).  NumPy's own
#: dispatch (NPY_DISABLE_CPU_FEATURES) is fixed before this module runs.
_PEER_ISA = {"scalar": ("SSE4_2", "default"), "avx2": ("AVX2", "avx2"),
             "avx512": ("AVX512", "avx512")}


def peer_isa() -> dict[str, str]:
    """The ISA caps the peers run with (what _torch()/_jax() set, or the user did)."""
    return {"xla": os.environ.get("XLA_FLAGS", ""),
            "torch": os.environ.get("ATEN_CPU_CAPABILITY", "<best>")}


def _torch():
    if "torch" not in sys.modules and "ATEN_CPU_CAPABILITY" not in os.environ:
        os.environ["ATEN_CPU_CAPABILITY"] = _PEER_ISA[csoftmax.show_config()["isa"]][1]
    try:
        import torch  # noqa: F401
        return torch
    except Exception:
        return None


def _jax():
    """jax with a single-threaded XLA CPU backend, or None if not installed.

    XLA's CPU thread pool is fixed when jax starts, so the benchmark pins it to
    one thread (unless XLA_FLAGS is already set) and times JAX only in the
    one-thread runs.  float64 needs jax_enable_x64."""
    if "jax" not in sys.modules and "XLA_FLAGS" not in os.environ:
        os.environ["XLA_FLAGS"] = ("--xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1 --xla_cpu_max_isa="
                                   + _PEER_ISA[csoftmax.show_config()["isa"]][0])
    try:
        import jax
        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_platforms", "cpu")
        return jax
    except Exception:
        return None


def _jax_fns(jax, zs, lab):
    """Jitted JAX peers over the rotated inputs: value_and_grad of the mean
    cross-entropy (the loss a JAX user writes) and logsumexp."""
    jnp = jax.numpy

    def loss(z, t):
        lse = jax.nn.logsumexp(z, axis=-1)
        return jnp.mean(lse - jnp.take_along_axis(z, t[:, None], axis=-1)[:, 0])

    vg = jax.jit(jax.value_and_grad(loss))
    lse = jax.jit(lambda z: jax.nn.logsumexp(z, axis=-1))
    dz = [jax.device_put(a) for a in zs]
    dt = jax.device_put(lab)
    k = len(dz)
    return {
        "jax xent value_and_grad": lambda i: jax.block_until_ready(vg(dz[i % k], dt)),
        "jax logsumexp": lambda i: jax.block_until_ready(lse(dz[i % k])),
    }


def _torch_fns(torch, zs, lab):
    """PyTorch peers over the rotated inputs: (F.cross_entropy forward + backward
    on a leaf, torch.logsumexp), zero-copy tensors of the same arrays."""
    tz = [torch.from_numpy(a) for a in zs]
    tl = torch.from_numpy(lab)
    F = torch.nn.functional
    k = len(tz)

    def xent(i):
        t = tz[i % k].detach().requires_grad_(True)
        loss = F.cross_entropy(t, tl)
        loss.backward()
        return loss

    return xent, (lambda i: torch.logsumexp(tz[i % k], dim=-1))


def _floor_fns(zs):
    """The machine's floors over the rotated inputs: (copy, read)."""
    dst = np.empty_like(zs[0])
    k = len(zs)
    return (lambda i: np.copyto(dst, zs[i % k])), (lambda i: np.max(zs[i % k]))


def _scipy_special():
    try:
        import scipy.special as ss
        return ss
    except Exception:
        return None


@contextlib.contextmanager
def _limit_threads(nthr: int, torch=None) -> Iterator[None]:
    """Run the body with ``nthr`` threads in csoftmax, NumPy's BLAS / OpenMP
    (threadpoolctl, when installed) and PyTorch; csoftmax goes back to all
    cores afterwards."""
    from csoftmax import _core

    try:
        from threadpoolctl import threadpool_limits
        ctx: Any = threadpool_limits(limits=nthr)
    except Exception:
        ctx = contextlib.nullcontext()
    # threadpoolctl limits NumPy's BLAS and every OpenMP runtime it finds;
    # csoftmax's own limit is set directly as well (works without it)
    _core.set_num_threads(nthr)
    if torch is not None:
        torch.set_num_threads(nthr)
    try:
        with ctx:
            yield
    finally:
        _core.set_num_threads(os.cpu_count() or 1)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_isas() -> str:
    """The CPU's vector extensions as csoftmax sees them, and the active path."""
    cfg = csoftmax.show_config()
    emu = " (emulated)" if cfg.get("emulated") else ""
    return f"csoftmax paths {'/'.join(cfg['available'])}, active {cfg['isa']}{emu}"


def _config() -> dict:
    """csoftmax's show_config() plus the machine and the peers' versions."""
    cfg: dict[str, Any] = dict(csoftmax.show_config())
    cfg["cpu"] = _cpu_name()
    cfg["cpu_count"] = os.cpu_count()
    cfg["peer_isa"] = peer_isa()
    cfg["python"] = platform.python_version()
    cfg["numpy"] = np.__version__
    for name in ("scipy", "torch", "jax"):
        mod = sys.modules.get(name)
        if mod is not None:
            cfg[name] = getattr(mod, "__version__", "?")
    return cfg


def _write_json(path: str, payload: dict) -> None:
    """``path`` "-" writes to stdout (the tables then go to stderr)."""
    if path == "-":
        json.dump(payload, sys.stdout, indent=1)
        sys.stdout.write("\n")
        sys.stdout.flush()
    else:
        with open(path, "w") as f:
            json.dump(payload, f, indent=1)
            f.write("\n")


# ----------------------------------------------------------------------------- main job table

def main_table(shape=(4096, 1000), reps: int = 15, out=sys.stdout) -> list[dict]:
    """The small table of ``python -m csoftmax``: C path vs the NumPy reference."""
    rng = np.random.default_rng(0)
    rows = []
    for dtype in (np.float32, np.float64):
        z = (3 * rng.standard_normal(shape)).astype(dtype)
        lab = rng.integers(0, shape[1], shape[0])
        g = np.empty_like(z)
        cases = {
            "logsumexp(axis=-1)": {
                "csoftmax": lambda i: csoftmax.logsumexp(z, axis=-1),
                "numpy idiom": lambda i: numpy_logsumexp(z),
                "reference (f64)": lambda i: reference.logsumexp(z, axis=-1),
            },
            "softmax(axis=-1)": {
                "csoftmax": lambda i: csoftmax.softmax(z, axis=-1),
                "reference (f64)": lambda i: reference.softmax(z, axis=-1),
            },
            "cross_entropy_with_grad(out=)": {
                "csoftmax": lambda i: csoftmax.cross_entropy_with_grad(z, lab, out=g),
                "numpy idiom": lambda i: numpy_xent_with_grad(z, lab),
                "reference (f64)": lambda i: reference.cross_entropy_with_grad(z, lab),
            },
        }
        for op, fns in cases.items():
            t = _median_ms(fns, reps)
            base = t["csoftmax"]
            for k, v in t.items():
                rows.append({"op": op, "dtype": np.dtype(dtype).name, "impl": k,
                             "ms": v, "ratio": v / base})
    w = max(len(r["op"]) for r in rows)
    print(f"\nTiming on {shape[0]}x{shape[1]} (median of {reps}, ms; ratio = time / csoftmax)",
          file=out)
    print(f"cpu: {_cpu_name()}; {_cpu_isas()}", file=out)
    print(f"{'operation':{w}s}  {'dtype':8s} {'implementation':16s} {'ms':>9s} {'ratio':>7s}",
          file=out)
    for r in rows:
        print(f"{r['op']:{w}s}  {r['dtype']:8s} {r['impl']:16s} {r['ms']:9.3f} {r['ratio']:7.2f}",
              file=out)
    return rows


# ----------------------------------------------------------------------------- full benchmark

BENCH_SHAPES = [(4096, 1000), (512, 32768), (64, 128256), (65536, 10), (1, 1000000)]


def run_bench(shapes=None, dtypes=("float32", "float64"), threads=(1,), reps: int = 11,
              cold: bool = True, json_path: str | None = None, out=sys.stdout) -> list[dict]:
    """Peers and floors, side by side per shape; returns the raw rows."""
    shapes = shapes or BENCH_SHAPES
    torch = _torch()
    ss = _scipy_special()
    jax = _jax() if 1 in threads else None
    rng = np.random.default_rng(1)
    rows: list[dict] = []
    print(f"csoftmax {csoftmax.__version__}  isa={csoftmax.show_config()['isa']}  "
          f"cold={cold}  reps={reps}", file=out)
    print(f"cpu: {_cpu_name()} ({os.cpu_count()} cores; {_cpu_isas()})", file=out)
    print(f"peers' ISA: XLA_FLAGS={peer_isa()['xla']!r}  "
          f"ATEN_CPU_CAPABILITY={peer_isa()['torch']}", file=out)
    for nthr in threads:
        with _limit_threads(nthr, torch):
            for dt in dtypes:
                for (n, c) in shapes:
                    z0 = (3 * rng.standard_normal((n, c))).astype(dt)
                    zs = _copies(z0, cold)
                    lab = rng.integers(0, c, n)
                    g = np.empty_like(z0)
                    k = len(zs)
                    copy_floor, read_floor = _floor_fns(zs)
                    fns = {
                        "copy floor": copy_floor,
                        "read floor": read_floor,
                        "csoftmax xent+grad": lambda i: csoftmax.cross_entropy_with_grad(
                            zs[i % k], lab, out=g),
                        "csoftmax logsumexp": lambda i: csoftmax.logsumexp(zs[i % k], axis=-1),
                        "numpy xent+grad": lambda i: numpy_xent_with_grad(zs[i % k], lab),
                    }
                    if ss is not None:
                        fns["scipy logsumexp"] = lambda i: ss.logsumexp(zs[i % k], axis=-1)
                    if torch is not None:
                        fns["torch xent fwd+bwd"], fns["torch logsumexp"] = _torch_fns(
                            torch, zs, lab)
                    if jax is not None and nthr == 1:
                        fns.update(_jax_fns(jax, zs, lab))
                    t = _median_ms(fns, reps)
                    for impl, ms in t.items():
                        rows.append({"shape": [n, c], "dtype": dt, "threads": nthr,
                                     "impl": impl, "ms": ms})
                    _print_block(n, c, dt, nthr, t, out)
    if json_path:
        _write_json(json_path, {"config": _config(), "cold": cold, "rows": rows})
    return rows


def _print_block(n, c, dt, nthr, t, out):
    cp, rd = t["copy floor"], t["read floor"]
    print(f"\n{n}x{c} {dt} threads={nthr} isa={csoftmax.show_config()['isa']}", file=out)
    print(f"  {'implementation':24s} {'ms':>9s} {'x copy':>7s} {'x read':>7s} {'vs csoftmax':>11s}",
          file=out)
    for impl, ms in t.items():
        ref = t["csoftmax logsumexp"] if "logsumexp" in impl else t["csoftmax xent+grad"]
        rel = "" if "floor" in impl else f"{ms / ref:11.2f}"
        print(f"  {impl:24s} {ms:9.3f} {ms / cp:7.2f} {ms / rd:7.2f} {rel}", file=out)


# ----------------------------------------------------------------------------- class sweep + plot

#: the default sweep of ``csoftmax bench --plot``: class counts, and N*C per problem
#: (N = round(SWEEP_ELEMS / C): 16 MiB of float32 logits, so every C reads the same bytes)
SWEEP_CLASSES = (10, 100, 1000, 10000, 32768, 128256)
SWEEP_ELEMS = 1 << 22
SWEEP_REPS = 9

#: impl id (the JSON's "impl") -> plot label, colour, line style
_SERIES = {
    "csoftmax": ("csoftmax", "C0", "-"),
    "numpy": ("NumPy idiom (float32)", "C1", "-"),
    "reference": ("csoftmax.reference (NumPy, float64)", "C5", "-"),
    "scipy": ("SciPy", "C2", "-"),
    "torch": ("PyTorch", "C3", "-"),
    "copy floor": ("copy floor (np.copyto)", "0.45", "--"),
    "read floor": ("read floor (np.max)", "0.45", ":"),
}
_OPS = {
    "cross_entropy_with_grad": "loss + gradient: cross_entropy_with_grad\n"
                               "(mean, int labels, out=); PyTorch: fwd + bwd",
    "logsumexp": "logsumexp(axis=-1)",
}


def sweep_shapes(classes=SWEEP_CLASSES, elems: int = SWEEP_ELEMS) -> list[tuple[int, int]]:
    """(N, C) per class count, N*C about ``elems``."""
    return [(max(1, round(elems / c)), int(c)) for c in classes]


def _progress(stream: TextIO | None, msg: str, final: bool = False) -> None:
    """One status line: overwritten in place on a terminal, one line per step otherwise."""
    if stream is None:
        return
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        stream.write("\r\033[K" + msg + ("\n" if final else ""))
    else:
        stream.write(msg + "\n")
    stream.flush()


def run_sweep(classes=SWEEP_CLASSES, elems: int = SWEEP_ELEMS, dtype: str = "float32",
              threads: int = 1, reps: int = SWEEP_REPS, cold: bool = True,
              out: TextIO | None = sys.stdout,
              progress: TextIO | None = sys.stderr) -> list[dict]:
    """Throughput against the number of classes: one interleaved timing group per C.

    Per C: cross_entropy_with_grad (mean, integer labels, ``out=``) and
    logsumexp(axis=-1) of csoftmax, the NumPy idiom, ``csoftmax.reference``
    (float64) and -- when installed -- SciPy (``logsumexp``; the loss as
    ``log_softmax`` + ``exp``) and PyTorch (``F.cross_entropy`` forward +
    backward, ``torch.logsumexp``), with the copy and read floors.  Returns one
    row per (C, op, impl): ``op`` ("cross_entropy_with_grad", "logsumexp" or
    "floor"), ``impl``, ``n``, ``c``, ``dtype``, ``threads``, ``ms`` (median),
    ``gbps`` (logits bytes N*C*itemsize / time, 1e9 B/s) and ``ns_per_elem``.
    """
    torch = _torch()
    ss = _scipy_special()
    rng = np.random.default_rng(2)
    shapes = sweep_shapes(classes, elems)
    rows: list[dict] = []
    t_start = time.perf_counter()
    with _limit_threads(threads, torch):
        for step, (n, c) in enumerate(shapes, 1):
            _progress(progress, f"[{step}/{len(shapes)}] C={c} N={n} {dtype} "
                                f"({time.perf_counter() - t_start:.0f} s) ...")
            z0 = (3 * rng.standard_normal((n, c))).astype(dtype)
            zs = _copies(z0, cold)
            lab = rng.integers(0, c, n)
            g = np.empty_like(z0)
            k = len(zs)
            X, L = "cross_entropy_with_grad", "logsumexp"
            # the floors get their own interleaved group, ahead of the peers: timed
            # among the peers, whose float64 / temporary arrays are mmap'ed and freed
            # on every call, the copy floor of this VM jumped 3x between class counts
            copy_floor, read_floor = _floor_fns(zs)
            floors: dict[tuple[str, str], Callable[[int], object]] = {
                ("floor", "copy floor"): copy_floor,
                ("floor", "read floor"): read_floor,
            }
            fns: dict[tuple[str, str], Callable[[int], object]] = {
                (X, "csoftmax"): lambda i: csoftmax.cross_entropy_with_grad(
                    zs[i % k], lab, out=g),
                (L, "csoftmax"): lambda i: csoftmax.logsumexp(zs[i % k], axis=-1),
                (X, "numpy"): lambda i: numpy_xent_with_grad(zs[i % k], lab),
                (L, "numpy"): lambda i: numpy_logsumexp(zs[i % k]),
                (X, "reference"): lambda i: reference.cross_entropy_with_grad(zs[i % k], lab),
                (L, "reference"): lambda i: reference.logsumexp(zs[i % k], axis=-1),
            }
            if ss is not None:
                fns[(X, "scipy")] = lambda i: scipy_xent_with_grad(zs[i % k], lab)
                fns[(L, "scipy")] = lambda i: ss.logsumexp(zs[i % k], axis=-1)
            if torch is not None:
                fns[(X, "torch")], fns[(L, "torch")] = _torch_fns(torch, zs, lab)
            t = _median_ms(floors, reps)
            t.update(_median_ms(fns, reps))
            nbytes = z0.nbytes
            for (op, impl), ms in t.items():
                rows.append({"op": op, "impl": impl, "n": n, "c": c, "dtype": dtype,
                             "threads": threads, "ms": ms,
                             "gbps": nbytes / (ms * 1e-3) / 1e9,
                             "ns_per_elem": ms * 1e6 / z0.size})
            del zs, fns, floors
    _progress(progress, f"sweep: {len(shapes)} class counts in "
                        f"{time.perf_counter() - t_start:.1f} s", final=True)
    if out is not None:
        _print_sweep(rows, cold, reps, out)
    return rows


def _print_sweep(rows: list[dict], cold: bool, reps: int, out: TextIO) -> None:
    impls = [i for i in _SERIES if any(r["impl"] == i for r in rows)]
    peers = [i for i in impls if "floor" not in i and i != "csoftmax"]
    by = {(r["op"], r["impl"], r["c"]): r for r in rows}
    cs = sorted({r["c"] for r in rows})
    r0 = rows[0] if rows else {"dtype": "?", "threads": "?"}
    print(f"\nclass sweep: {r0['dtype']}, threads={r0['threads']}, cold={cold}, "
          f"median of {reps}; GB/s of logits read (higher is better), "
          f"(x) = time / csoftmax", file=out)
    print(f"cpu: {_cpu_name()}; {_cpu_isas()}", file=out)
    for op in _OPS:
        print(f"\n{op}", file=out)
        head = f"{'C':>7s} {'N':>7s} {'copy':>6s} {'read':>6s} {'csoftmax':>8s}"
        head += "".join(f" {p:>15s}" for p in peers)
        print(head, file=out)
        for c in cs:
            cs_row = by[(op, "csoftmax", c)]
            line = (f"{c:7d} {cs_row['n']:7d} {by[('floor', 'copy floor', c)]['gbps']:6.2f} "
                    f"{by[('floor', 'read floor', c)]['gbps']:6.2f} {cs_row['gbps']:8.2f}")
            for p in peers:
                r = by.get((op, p, c))
                cell = "" if r is None else f"{r['gbps']:.2f} ({r['ms'] / cs_row['ms']:.1f}x)"
                line += f" {cell:>15s}"
            print(line, file=out)


def _import_matplotlib() -> Any:
    """matplotlib's Figure, Agg canvas and ticker, or SystemExit saying how to get them.

    No pyplot: a Figure drawn on an explicit Agg canvas needs no display and
    leaves the process-wide backend of a caller (e.g. a notebook) alone."""
    try:
        import matplotlib.ticker as ticker
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise SystemExit(
            "csoftmax bench --plot needs matplotlib, which is not installed "
            f"({exc}); install it with:  pip install \"csoftmax[bench]\"") from None
    return Figure, FigureCanvasAgg, ticker


def _save_png_small(fig: Any, path: str, dpi: int) -> None:
    """Save as a 256-colour palette PNG (a third of the RGBA size, same look for
    line art) with Pillow, which matplotlib itself requires; plain savefig
    if that fails."""
    import io

    try:
        from PIL import Image

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        buf.seek(0)
        with Image.open(buf) as im:
            im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
                path, format="PNG", optimize=True)
    except Exception:
        fig.savefig(path, dpi=dpi)


def plot_sweep(rows: list[dict], path: str, title: str | None = None,
               dpi: int = 100, figsize: tuple[float, float] = (8.0, 4.2)) -> str:
    """Draw ``run_sweep`` rows to a PNG at ``path``: GB/s of logits read against C
    (both axes logarithmic), one panel per op, one line per implementation, the
    copy and read floors as grey lines.  Returns ``path``."""
    Figure, FigureCanvasAgg, ticker = _import_matplotlib()
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    cs = sorted({r["c"] for r in rows})
    elems = statistics.median(r["n"] * r["c"] for r in rows) if rows else 0
    for ax, (op, op_title) in zip(axes, _OPS.items()):
        for impl, (label, color, ls) in _SERIES.items():
            want = "floor" if "floor" in impl else op
            pts = sorted((r["c"], r["gbps"]) for r in rows
                         if r["op"] == want and r["impl"] == impl)
            if not pts:
                continue
            x, y = zip(*pts)
            main = impl == "csoftmax"
            ax.plot(x, y, ls, color=color, label=label, marker=None if "floor" in impl else "o",
                    markersize=3.5, linewidth=2.4 if main else 1.3, zorder=3 if main else 2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(cs)
        ax.set_xticklabels([f"{c:,}".replace(",", "\u2009") for c in cs], fontsize=7)
        ax.minorticks_off()
        ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 3.0)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.set_title(op_title, fontsize=9)
        ax.set_xlabel(f"number of classes C  (N rows, N\u00b7C \u2248 {elems / 1e6:.2g} M)",
                      fontsize=8)
        ax.grid(True, which="major", alpha=0.3)
        ax.tick_params(labelsize=7)
    dt = np.dtype(rows[0]["dtype"]) if rows else np.dtype(np.float32)
    axes[0].set_ylabel(f"GB/s of {dt.name} logits read\n"
                       f"(N\u00b7C\u00b7{dt.itemsize} bytes / time; higher is better)", fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    if str(path).lower().endswith(".png"):
        _save_png_small(fig, path, dpi)
    else:                           # another format matplotlib knows (.svg, .pdf)
        fig.savefig(path, dpi=dpi)
    return path


def _sweep_title(rows: list[dict], cold: bool) -> str:
    cfg = csoftmax.show_config()
    r0 = rows[0] if rows else {"dtype": "?", "threads": "?"}
    thr = r0["threads"]
    return (f"csoftmax {cfg['version']} ({cfg['isa']}) vs peers, {r0['dtype']}, "
            f"{thr} thread{'s' if thr != 1 else ''}, {'cold' if cold else 'warm'} data, "
            f"{_cpu_name()} ({os.cpu_count()} cores)")


def bench_main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="csoftmax bench", description="csoftmax against peers and memory floors",
        epilog="--plot PATH runs the class sweep (float32, C in --classes, N*C about --elems) "
               "instead of the shape table (give --shapes to run both) and needs matplotlib "
               "(--layouts and --losses likewise replace the shape table; with --losses, "
               "--shapes are the loss shapes) "
               "(pip install \"csoftmax[bench]\"); with --json both runs' raw rows go to one "
               "file (keys \"rows\", \"sweep\", \"layouts\", \"losses\").  Progress goes to stderr.")
    p.add_argument("--shapes", default=None,
                   help="comma-separated NxC list, e.g. 4096x1000,65536x10 (default: the issue's five)")
    p.add_argument("--dtypes", default=None,
                   help="dtypes of the shape table (default float32,float64; float32 with --losses)")
    p.add_argument("--threads", default="1",
                   help="comma-separated thread counts, e.g. 1,2 (the sweep uses the first)")
    p.add_argument("--reps", type=int, default=None,
                   help=f"timed rounds per figure (default 11; {SWEEP_REPS} for the sweep)")
    p.add_argument("--warm", action="store_true", help="reuse one input (cache-warm) instead of rotating")
    p.add_argument("--json", default=None,
                   help="write raw rows to this path ('-': stdout, the tables then go to stderr)")
    p.add_argument("--plot", default=None, metavar="PATH",
                   help="run the class sweep and draw it to this PNG")
    p.add_argument("--layouts", action="store_true",
                   help="run the layout table instead: (N, C, H, W) with axis=1, axis=0 "
                        "reductions, F-ordered arrays, against PyTorch, SciPy and the floors")
    p.add_argument("--losses", action="store_true",
                   help="run the loss table instead: binary cross-entropy, distillation KL, "
                        "token log-probabilities against PyTorch, the NumPy idiom and the "
                        "floors, with issue 16's targets judged PASS/MISS")
    p.add_argument("--half", action="store_true",
                   help="run the half-precision table instead: float16 and bfloat16 against "
                        "float32 and PyTorch's bfloat16 loss + backward (--shapes are its "
                        "shapes), with issue 14's targets judged PASS/MISS (needs ml_dtypes)")
    from csoftmax._bench_losses import add_arguments as _loss_arguments
    _loss_arguments(p, bench=True)
    p.add_argument("--classes", default=",".join(str(c) for c in SWEEP_CLASSES),
                   help="class counts of the sweep (default %(default)s)")
    p.add_argument("--elems", type=int, default=SWEEP_ELEMS,
                   help="N*C per sweep problem, N = round(elems / C) (default %(default)s)")
    a = p.parse_args(argv)
    if (a.smoke and not (a.losses or a.half)) or (a.bce_shapes and not a.losses):
        p.error("--smoke goes with --losses or --half, --bce-shapes with --losses")
    dtypes = tuple((a.dtypes or "float32,float64").split(","))
    if any(d in ("float16", "bfloat16") for d in dtypes) and not a.half:
        p.error("--dtypes: float16 and bfloat16 have their own table, --half "
                "(against float32 and PyTorch's bfloat16)")
    if a.plot:
        _import_matplotlib()        # fail now, not after the sweep
    out = sys.stderr if a.json == "-" else sys.stdout
    shapes = None
    if a.shapes:
        shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes.split(",")]
    threads = tuple(int(t) for t in a.threads.split(","))
    payload: dict[str, Any] = {"config": None, "cold": not a.warm}
    if a.layouts:
        from csoftmax._bench_layouts import run_layouts
        payload["layouts"] = run_layouts(dtypes=dtypes, threads=threads,
                                         reps=a.reps or 11, cold=not a.warm, out=out)
    if a.half:
        from csoftmax._bench_half import run_half
        payload["half"] = run_half(shapes=shapes, threads=threads,
                                   reps=1 if a.smoke else (a.reps or 11),
                                   cold=not (a.warm or a.smoke), out=out, smoke=a.smoke)
        payload["cold"] = not (a.warm or a.smoke)
    elif a.losses:
        from csoftmax._bench_losses import run_from_args
        payload["losses"] = run_from_args(a, out)
        payload["cold"] = not (a.warm or a.smoke)
    elif (shapes is not None or not a.plot) and not (a.layouts and shapes is None):
        payload["rows"] = run_bench(shapes=shapes, dtypes=dtypes,
                                    threads=threads, reps=a.reps or 11, cold=not a.warm, out=out)
    if a.plot:
        classes = tuple(int(c) for c in a.classes.split(","))
        reps = a.reps or SWEEP_REPS
        rows = run_sweep(classes=classes, elems=a.elems, threads=threads[0], reps=reps,
                         cold=not a.warm, out=out, progress=sys.stderr)
        payload["sweep"] = {"dtype": "float32", "threads": threads[0], "reps": reps,
                            "elems": a.elems, "classes": list(classes), "rows": rows}
        plot_sweep(rows, a.plot, title=_sweep_title(rows, not a.warm))
        print(f"\nplot written to {a.plot}", file=out)
    if a.json:
        payload["config"] = _config()
        _write_json(a.json, payload)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(bench_main(sys.argv[1:]))
