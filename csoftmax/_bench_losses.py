"""``csoftmax bench --losses``: the losses of issue 16 against PyTorch, the NumPy
idiom and the machine's floors, with the issue's targets judged PASS / MISS.

Functions and their peers (float32; PyTorch on zero-copy tensors of the same
arrays, its forward + backward where it needs both for the same result):

========================================  ==========================================================
csoftmax                                  PyTorch
========================================  ==========================================================
binary_cross_entropy_with_grad(out=)      F.binary_cross_entropy_with_logits(z, t).backward()
binary_cross_entropy                      F.binary_cross_entropy_with_logits(z, t)
kl_div_with_grad(temperature=T, out=)     (F.kl_div(F.log_softmax(s/T, -1), F.softmax(t/T, -1),
                                          reduction="batchmean") * T**2).backward()
kl_div(temperature=T)                     the same without .backward()
token_logprobs                            F.log_softmax(z, -1).gather(-1, labels[:, None])
token_logprobs(return_entropy=True)       the same plus -(p * logp).sum(-1), p = logp.exp()
========================================  ==========================================================

The NumPy idioms (``numpy_*`` below) are the stable formulas a user writes,
in float32: ``max(z, 0) - z t + log1p(exp(-|z|))`` and the sigmoid from the
same ``exp(-|z|)``; two max-shifted log-softmaxes for the KL; the
exponentials of the max-shifted row once for the token log-probability and
the entropy (``lse - sum p z``; no N x C log-softmax).

Timing (see ``_bench``): interleaved medians on cold data, inputs rotated over
copies of >= 96 MiB; ``_bench._median_ms`` moves to the next copy on every
call, so two functions timed one after the other never read the same copy while
it is still in the cache.  Per shape
and thread count there are two kinds of groups:

* the floor group: ``np.copyto`` of the logits (the copy floor), ``np.max``
  of them (the read floor), ``csoftmax.logsumexp`` and every csoftmax
  function -- no peer in it, since the peers' temporaries, mapped and freed on
  every call, slow whatever runs next on this kind of machine (see
  ``_bench.run_sweep``).  csoftmax's times, its "x copy" and the
  token-log-probability vs logsumexp ratio come from here;
* one group per function: csoftmax, PyTorch, NumPy; the peer ratios (peer
  time / csoftmax time, > 1 = csoftmax faster) come from here.

Targets (issue 16; judged for one thread, float32, cold data): each function
>= 3x faster than PyTorch and than the NumPy idiom, <= 2.5x the copy floor
where it writes a gradient, ``token_logprobs`` with the entropy <= 1.2x the
time of ``logsumexp`` on the same logits.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable

import numpy as np

import csoftmax
from csoftmax import _bench as B

#: (N, C) of the KL and the token log-probabilities; the binary cross-entropy
#: (multi-label: C independent labels per row) on BCE_SHAPES
LOSS_SHAPES = [(4096, 1000), (64, 128256)]
BCE_SHAPES = [(4096, 1000)]
SMOKE_SHAPES = [(64, 100), (4, 3000)]
SMOKE_BCE_SHAPES = [(64, 100)]
#: the distillation temperature (T != 1, so that the divisions by T are timed)
TEMPERATURE = 2.0
#: fraction of positive labels in the multi-label targets
BCE_POSITIVE_RATE = 0.05

TARGET_PEER = 3.0       # x faster than PyTorch and than the NumPy idiom
TARGET_COPY = 2.5       # x the copy floor, functions that write a gradient
TARGET_LSE = 1.2        # token_logprobs(return_entropy=True) / logsumexp

#: case id -> (label, writes a gradient)
CASES = {
    "bce+grad": ("binary_cross_entropy_with_grad", True),
    "bce": ("binary_cross_entropy", False),
    "kl+grad": ("kl_div_with_grad", True),
    "kl": ("kl_div", False),
    "logp": ("token_logprobs", False),
    "logp+ent": ("token_logprobs(+entropy)", False),
}


# ----------------------------------------------------------------------------- NumPy idioms

def numpy_bce(z: np.ndarray, t: np.ndarray):
    """Mean binary cross-entropy with logits, the stable form."""
    return (np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))).mean()


def numpy_bce_with_grad(z: np.ndarray, t: np.ndarray):
    """The same and its gradient ``(sigmoid(z) - t) / numel``, the sigmoid from
    the same ``exp(-|z|)`` (no overflow)."""
    e = np.exp(-np.abs(z))
    loss = (np.maximum(z, 0) - z * t + np.log1p(e)).mean()
    g = np.where(z >= 0, 1, e) / (1 + e)
    g -= t
    g *= 1 / z.size
    return loss, g


def _numpy_log_softmax(x: np.ndarray) -> np.ndarray:
    y = x - x.max(axis=-1, keepdims=True)
    y -= np.log(np.exp(y).sum(axis=-1, keepdims=True))
    return y


def numpy_kl(s: np.ndarray, t: np.ndarray, T: float):
    """``T**2 * KL(softmax(t/T) || softmax(s/T))``, batchmean."""
    ls = _numpy_log_softmax(s / T)
    lt = _numpy_log_softmax(t / T)
    return (T * T / s.shape[0]) * (np.exp(lt) * (lt - ls)).sum()


def numpy_kl_with_grad(s: np.ndarray, t: np.ndarray, T: float):
    """The same and its gradient for the student, ``T (q - p) / N``."""
    ls = _numpy_log_softmax(s / T)
    lt = _numpy_log_softmax(t / T)
    p = np.exp(lt)
    loss = (T * T / s.shape[0]) * (p * (lt - ls)).sum()
    g = np.exp(ls)
    g -= p
    g *= T / s.shape[0]
    return loss, g


def numpy_token_logprobs(z: np.ndarray, labels: np.ndarray, entropy: bool = False):
    """``log softmax(z)[label]`` per row (and the entropy ``lse - sum p z``)
    from the exponentials of the max-shifted rows."""
    y = z - z.max(axis=-1, keepdims=True)
    e = np.exp(y)
    s = e.sum(axis=-1)
    logs = np.log(s)
    logp = y[np.arange(z.shape[0]), labels] - logs
    if not entropy:
        return logp
    return logp, logs - (e * y).sum(axis=-1) / s


# ----------------------------------------------------------------------------- groups

def _csoftmax_fns(case: str, zs, ts, lab, g, T: float) -> Callable[[int], object]:
    """Maker of the csoftmax call of `case` for input copy j."""
    if case == "bce+grad":
        return lambda j: csoftmax.binary_cross_entropy_with_grad(zs[j], ts[j], out=g)
    if case == "bce":
        return lambda j: csoftmax.binary_cross_entropy(zs[j], ts[j])
    if case == "kl+grad":
        return lambda j: csoftmax.kl_div_with_grad(zs[j], ts[j], temperature=T, out=g)
    if case == "kl":
        return lambda j: csoftmax.kl_div(zs[j], ts[j], temperature=T)
    if case == "logp":
        return lambda j: csoftmax.token_logprobs(zs[j], lab)
    return lambda j: csoftmax.token_logprobs(zs[j], lab, return_entropy=True)


def _numpy_fns(case: str, zs, ts, lab, T: float):
    if case == "bce+grad":
        return lambda j: numpy_bce_with_grad(zs[j], ts[j])
    if case == "bce":
        return lambda j: numpy_bce(zs[j], ts[j])
    if case == "kl+grad":
        return lambda j: numpy_kl_with_grad(zs[j], ts[j], T)
    if case == "kl":
        return lambda j: numpy_kl(zs[j], ts[j], T)
    return lambda j: numpy_token_logprobs(zs[j], lab, entropy=case == "logp+ent")


def _torch_fns(torch, case: str, zs, ts, lab, T: float):
    F = torch.nn.functional
    tz = [torch.from_numpy(a) for a in zs]
    tt = [torch.from_numpy(a) for a in ts] if ts is not None else None
    tl = torch.from_numpy(lab).unsqueeze(-1) if lab is not None else None

    if case in ("bce+grad", "bce"):
        def bce(j):
            if case == "bce":
                return F.binary_cross_entropy_with_logits(tz[j], tt[j])
            x = tz[j].detach().requires_grad_(True)
            loss = F.binary_cross_entropy_with_logits(x, tt[j])
            loss.backward()
            return loss, x.grad
        return bce
    if case in ("kl+grad", "kl"):
        def kl(j):
            x = tz[j] if case == "kl" else tz[j].detach().requires_grad_(True)
            loss = F.kl_div(F.log_softmax(x / T, -1), F.softmax(tt[j] / T, -1),
                            reduction="batchmean") * T ** 2
            if case == "kl":
                return loss
            loss.backward()
            return loss, x.grad
        return kl

    def tok(j):
        lp = F.log_softmax(tz[j], -1)
        logp = lp.gather(-1, tl).squeeze(-1)
        if case == "logp":
            return logp
        return logp, -(lp.exp() * lp).sum(-1)
    return tok


def _parts(r) -> list[np.ndarray]:
    """A result (loss, (loss, grad), logp, (logp, entropy)) as float64 arrays."""
    r = r if isinstance(r, tuple) else (r,)
    return [np.asarray(getattr(x, "detach", lambda: x)(), dtype=np.float64) for x in r]


def _disagreement(makers: dict[str, Callable[[int], object]]) -> float:
    """Largest difference of a peer's result from csoftmax's on copy 0, relative
    to the largest magnitude of that output (loss, gradient, per-row values):
    the peers must compute the same thing to be compared."""
    want = _parts(makers["csoftmax"](0))
    worst = 0.0
    for impl, f in makers.items():
        if impl == "csoftmax":
            continue
        for a, b in zip(_parts(f(0)), want):
            scale = max(float(np.max(np.abs(b), initial=0.0)), 1e-30)
            worst = max(worst, float(np.max(np.abs(a - b), initial=0.0)) / scale)
    return worst


def _timed(makers: dict[str, Callable[[int], object]], k: int, reps: int):
    """Interleaved medians of the makers (taking a copy index < k); the shared timer
    moves to the next copy on every call."""
    return B._median_ms({name: (lambda i, f=f: f(i % k)) for name, f in makers.items()}, reps)


def _inputs(cases, n: int, c: int, dt: str, cold: bool, rng):
    """{case: (logits copies, second-input copies or None, labels or None, gradient
    buffer or None)}: the logits copies and the gradient buffer are shared by all
    cases, the binary targets by the two BCE cases, the teacher by the two KL ones."""
    z0 = (3 * rng.standard_normal((n, c))).astype(dt)
    zs = B._copies(z0, cold)
    g = np.empty_like(z0)
    bce_t = kl_t = lab = None
    if any(k.startswith("bce") for k in cases):
        t0 = (rng.random((n, c)) < BCE_POSITIVE_RATE).astype(dt)
        bce_t = B._copies(t0, cold)
    if any(k.startswith("kl") for k in cases):
        kl_t = B._copies((3 * rng.standard_normal((n, c))).astype(dt), cold)
    if any(k.startswith("logp") for k in cases):
        lab = rng.integers(0, c, n)
    return {k: (zs, bce_t if k.startswith("bce") else kl_t if k.startswith("kl") else None,
                lab if k.startswith("logp") else None, g if CASES[k][1] else None)
            for k in cases}


# ----------------------------------------------------------------------------- run

def run_losses(shapes=None, bce_shapes=None, dtypes=("float32",), threads=(1,), reps: int = 11,
               cold: bool = True, smoke: bool = False, out=sys.stdout) -> dict[str, list]:
    """Time every case per shape and thread count; print the tables and the
    targets.  Returns {"rows": [...], "targets": [...], "checks": [...]} ("checks": the
    largest relative difference of a peer's result from csoftmax's, per function)."""
    if smoke:
        shapes = shapes or SMOKE_SHAPES
        bce_shapes = bce_shapes or SMOKE_BCE_SHAPES
    shapes = shapes or LOSS_SHAPES
    bce_shapes = BCE_SHAPES if bce_shapes is None else bce_shapes
    torch = B._torch()
    T = TEMPERATURE
    rng = np.random.default_rng(16)
    cfg = csoftmax.show_config()
    rows: list[dict] = []
    targets: list[dict] = []
    checks: list[dict] = []
    print(f"csoftmax {csoftmax.__version__} losses  isa={cfg['isa']}  cold={cold}  reps={reps}"
          f"{'  SMOKE (not a measurement)' if smoke else ''}", file=out)
    print(f"cpu: {B._cpu_name()} ({os.cpu_count()} cores; {B._cpu_isas()})", file=out)
    print(f"peers: torch {getattr(torch, '__version__', 'not installed')} "
          f"(ATEN_CPU_CAPABILITY={B.peer_isa()['torch']}), numpy {np.__version__}; "
          f"KL temperature {T:g}, BCE targets 0/1 with {BCE_POSITIVE_RATE:.0%} positives",
          file=out)
    all_shapes = list(dict.fromkeys([tuple(s) for s in bce_shapes] + [tuple(s) for s in shapes]))
    for nthr in threads:
        with B._limit_threads(nthr, torch):
            for dt in dtypes:
                for (n, c) in all_shapes:
                    cases = [k for k in CASES
                             if (k.startswith("bce") and (n, c) in map(tuple, bce_shapes))
                             or (not k.startswith("bce") and (n, c) in map(tuple, shapes))]
                    res = _run_shape(n, c, dt, nthr, cases, torch, T, reps, cold, rng)
                    for (group, impl, case), ms in res.items():
                        if group == "check":
                            checks.append({"shape": [n, c], "dtype": dt, "threads": nthr,
                                           "function": CASES[case][0], "max_rel_diff": ms})
                            continue
                        rows.append({"shape": [n, c], "dtype": dt, "threads": nthr,
                                     "group": group, "case": case, "impl": impl, "ms": ms})
                    tg = _judge(n, c, dt, nthr, cases, res, cold, smoke)
                    targets += tg
                    _print_shape(n, c, dt, nthr, cases, res, tg, out)
    _print_targets(targets, out)
    return {"rows": rows, "targets": targets, "checks": checks}


def _run_shape(n, c, dt, nthr, cases, torch, T, reps, cold, rng):
    """{(group, impl, case): median ms} for one shape."""
    inputs = _inputs(cases, n, c, dt, cold, rng)
    zs = inputs[cases[0]][0]
    k = len(zs)
    # the floor group: floors, logsumexp and every csoftmax function, no peer
    copy_floor, read_floor = B._floor_fns(zs)
    floor: dict[str, Callable[[int], object]] = {
        "copy floor": copy_floor,
        "read floor": read_floor,
        "csoftmax logsumexp": lambda j: csoftmax.logsumexp(zs[j], axis=-1),
    }
    for case in cases:
        czs, cts, lab, g = inputs[case]
        floor[case] = _csoftmax_fns(case, czs, cts, lab, g, T)
    res: dict[tuple[str, str, str], float] = {}
    for key, ms in _timed(floor, k, reps).items():
        if key in CASES:
            res[("floor", "csoftmax", key)] = ms
        else:
            res[("floor", key, "")] = ms
    for case in cases:
        czs, cts, lab, g = inputs[case]
        group: dict[str, Callable[[int], object]] = {
            "csoftmax": _csoftmax_fns(case, czs, cts, lab, g, T),
            "numpy": _numpy_fns(case, czs, cts, lab, T),
        }
        if torch is not None:
            group["torch"] = _torch_fns(torch, case, czs, cts, lab, T)
        res[("check", "max rel diff", case)] = _disagreement(group)
        for impl, ms in _timed(group, len(czs), reps).items():
            res[(case, impl, case)] = ms
    return res


def _judge(n, c, dt, nthr, cases, res, cold, smoke) -> list[dict]:
    """The issue's targets for one shape: one entry per (function, target)."""
    out = []
    judged = nthr == 1 and dt == "float32" and cold and not smoke
    cp = res[("floor", "copy floor", "")]
    lse = res[("floor", "csoftmax logsumexp", "")]

    def add(case, what, value, limit, higher_is_better):
        ok = value >= limit if higher_is_better else value <= limit
        out.append({"shape": [n, c], "dtype": dt, "threads": nthr, "function": CASES[case][0],
                    "target": what, "value": value, "limit": limit, "pass": bool(ok),
                    "judged": judged})

    for case in cases:
        cs = res[(case, "csoftmax", case)]
        for peer in ("torch", "numpy"):
            if (case, peer, case) in res:
                add(case, f"vs {peer}", res[(case, peer, case)] / cs, TARGET_PEER, True)
        if CASES[case][1]:
            add(case, "x copy", res[("floor", "csoftmax", case)] / cp, TARGET_COPY, False)
        if case == "logp+ent":
            add(case, "x logsumexp", res[("floor", "csoftmax", case)] / lse, TARGET_LSE, False)
    return out


def _fmt_peer(res, case, peer):
    t = res.get((case, peer, case))
    if t is None:
        return "–"
    return f"{t:.2f} ({t / res[(case, 'csoftmax', case)]:.2f}x)"


def _print_shape(n, c, dt, nthr, cases, res, tg, out):
    cp = res[("floor", "copy floor", "")]
    rd = res[("floor", "read floor", "")]
    lse = res[("floor", "csoftmax logsumexp", "")]
    print(f"\n{n}x{c} {dt} threads={nthr} isa={csoftmax.show_config()['isa']}: "
          f"copy floor {cp:.3f} ms, read floor {rd:.3f} ms, csoftmax logsumexp {lse:.3f} ms "
          f"({lse / rd:.2f}x read)", file=out)
    print(f"  {'function':32s} {'csoftmax ms':>11s} {'x copy':>7s} {'x lse':>6s}  "
          f"{'torch ms (x)':>17s} {'numpy ms (x)':>17s} {'rel diff':>8s}  targets", file=out)
    for case in cases:
        ms = res[("floor", "csoftmax", case)]
        verdicts = " ".join(f"{t['target'].split(' ', 1)[1]}:{'PASS' if t['pass'] else 'MISS'}"
                            for t in tg if t["function"] == CASES[case][0])
        print(f"  {CASES[case][0]:32s} {ms:11.3f} {ms / cp:7.2f} {ms / lse:6.2f}  "
              f"{_fmt_peer(res, case, 'torch'):>17s} {_fmt_peer(res, case, 'numpy'):>17s} "
              f"{res[('check', 'max rel diff', case)]:8.1e}  {verdicts}", file=out)
    print("  (csoftmax ms, x copy, x lse: the floor group; torch / numpy (x) = their time over "
          "csoftmax's in the function's own group; rel diff = the peers' largest difference "
          "from csoftmax's result, relative to its largest magnitude)", file=out)


def _print_targets(targets: list[dict], out) -> None:
    judged = [t for t in targets if t["judged"]]
    print("\nissue 16 targets (one thread, float32, cold):", file=out)
    if not judged:
        print("  none judged in this run (need threads 1, float32, cold data, not --smoke); "
              "as they would read:", file=out)
        judged = [t for t in targets if t["threads"] == targets[0]["threads"]] if targets else []
    for t in judged:
        n, c = t["shape"]
        if t["target"].startswith("vs "):
            what = (f"{t['target'][3:]} takes {t['value']:.2f}x csoftmax's time "
                    f"(target >= {t['limit']:g}x)")
        else:
            what = f"{t['value']:.2f}x the {t['target'][2:]} time (target <= {t['limit']:g}x)"
        print(f"  {'PASS' if t['pass'] else 'MISS'}  {t['function']:32s} {n}x{c}: {what}",
              file=out)
    n_pass = sum(t["pass"] for t in judged)
    print(f"  {n_pass} PASS, {len(judged) - n_pass} MISS", file=out)


# ----------------------------------------------------------------------------- command line

def _shapes(s: str | None):
    if not s:
        return None
    return [tuple(int(v) for v in x.split("x")) for x in s.split(",")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="bench_losses",
        description="issue 16's losses against PyTorch, the NumPy idiom and the floors")
    add_arguments(p)
    p.add_argument("--json", default=None, help="write raw rows and targets to this path")
    a = p.parse_args(argv)
    payload = run_from_args(a, sys.stdout)
    if a.json:
        B._write_json(a.json, {"config": B._config(), "cold": not a.warm and not a.smoke,
                               "losses": payload})
    return 0


def add_arguments(p: argparse.ArgumentParser, bench: bool = False) -> None:
    """The options of this run (``bench``: only those ``csoftmax bench`` lacks)."""
    if not bench:
        p.add_argument("--threads", default="1", help="comma-separated thread counts, e.g. 1,2")
        p.add_argument("--reps", type=int, default=None, help="timed rounds (default 11)")
        p.add_argument("--warm", action="store_true", help="no rotation of input copies")
        p.add_argument("--shapes", default=None,
                       help="NxC list of the KL and token cases (default 4096x1000,64x128256)")
        p.add_argument("--dtypes", default=None, help="dtypes (default float32)")
    p.add_argument("--bce-shapes", default=None,
                   help="NxC list of the binary cross-entropy (default 4096x1000)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny shapes, one round, warm: checks that the run works (a test runs it)")


def run_from_args(a: Any, out) -> dict[str, list]:
    dtypes = tuple((a.dtypes or "float32").split(","))
    return run_losses(shapes=_shapes(a.shapes), bce_shapes=_shapes(a.bce_shapes),
                      dtypes=dtypes, threads=tuple(int(t) for t in a.threads.split(",")),
                      reps=1 if a.smoke else (a.reps or 11), cold=not (a.warm or a.smoke),
                      smoke=a.smoke, out=out)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
