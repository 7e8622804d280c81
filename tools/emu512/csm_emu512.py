"""csm_emu512 -- execute csoftmax's AVX-512 kernels on an emulated CPU.

Test tooling only (``tools/avx512_emu.sh``); never imported by a normal build.

A csoftmax built with ``CSOFTMAX_TEST_SEAM=1`` imports this module when
``CSOFTMAX_EMU_AVX512=1`` is set and calls :func:`install`, which registers a
*runner* with the dispatcher's test seam (``src_c/dispatch.c``, Design 3).
Every AVX-512 kernel call then reaches :meth:`Emu512.call` as ``fn(arg)``: a
thunk of the extension (``src_c/seam_avx512.c``) that calls the real kernel
with its real arguments.  The thunk runs on the Bochs x86-64 CPU core
(PyPI: ``bochscpu-python``; its CPU model has AVX-512 F/CD/DQ/BW/VL), on
this process's own memory:

* Guest virtual addresses are host virtual addresses.  Guest page tables
  (kept in a pool of host pages, which Bochs sees as guest-physical memory)
  are filled on demand: a page fault on an address the host has mapped maps
  a window of pages around it, with the host's permissions (no write where
  the host cannot write; execution only inside the emulated objects: the
  extension and libm).  A fault on memory the host has not mapped, a write to
  read-only memory, an invalid opcode or any other CPU exception is a crash of
  the code under test: :class:`EmuCrash`, with the registers and the symbol.
* Exceptions are delivered through an IDT whose gates all point at one
  unmapped handler address, on a separate interrupt stack (IST1), so the
  kernel's stack and its red zone are never touched; the exception hook stops
  the CPU when the handler fetch faults, and the frame on the interrupt stack
  tells where to resume.
* A jump to code outside the emulated objects is a *call-out* served
  natively when it is one of a few known functions: the allocator and
  ``mem*`` of libc, ``omp_get_*`` of libgomp, and ``GOMP_parallel``, whose
  body then runs in the guest with a team of one thread.  Anything else is a
  crash (the kernels call nothing else).
* The runner is a ctypes callback; calls are serialized by a lock.

What this does not test: timing, AVX-512 code on more than one thread,
frequency effects.
"""
from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import mmap
import os
import struct
import sys
import threading

PAGE = 4096
_NX = 1 << 63
_ADDR = 0x000F_FFFF_FFFF_F000           # physical-address bits of a page-table entry

_libc = ctypes.CDLL(None, use_errno=True)


def _import_bochscpu():
    """Import bochscpu; its wheel needs glibc 2.38's __isoc23_* functions, which
    older glibc (Debian 12: 2.36) lacks: tools/avx512_emu.sh builds a stand-in
    (libcsm_isoc23.so, next to this file) that is loaded globally first."""
    shim = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libcsm_isoc23.so")
    if os.path.exists(shim):
        ctypes.CDLL(shim, mode=ctypes.RTLD_GLOBAL)
    import bochscpu
    import bochscpu.cpu
    import bochscpu.memory
    return bochscpu


bochscpu = _import_bochscpu()


class EmuCrash(RuntimeError):
    """The emulated code faulted (or could not be run)."""


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


_libc.dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
_libc.dladdr.restype = ctypes.c_int


def symbol_at(addr: int) -> str:
    """'name+offset in object' for a code address (best effort)."""
    info = _DlInfo()
    if not addr or not _libc.dladdr(ctypes.c_void_p(addr), ctypes.byref(info)):
        return "?"
    obj = os.path.basename((info.dli_fname or b"?").decode())
    if info.dli_sname:
        return f"{info.dli_sname.decode()}+{addr - (info.dli_saddr or 0):#x} in {obj}"
    return f"{addr - (info.dli_fbase or 0):#x} in {obj}"


def object_of(addr: int) -> str:
    """Path of the loaded object holding addr."""
    info = _DlInfo()
    if not _libc.dladdr(ctypes.c_void_p(addr), ctypes.byref(info)) or not info.dli_fname:
        raise EmuCrash(f"no loaded object at {addr:#x}")
    return os.path.realpath(info.dli_fname.decode())


def _fs_base() -> int:
    """The calling thread's FS base (its TLS), for the guest's %fs accesses."""
    v = ctypes.c_uint64(0)
    # arch_prctl(ARCH_GET_FS = 0x1003, &v) is system call 158 on x86-64
    if _libc.syscall(ctypes.c_long(158), ctypes.c_long(0x1003), ctypes.byref(v)) != 0:
        raise OSError(ctypes.get_errno(), "arch_prctl(ARCH_GET_FS)")
    return v.value


def _host_region(va: int):
    """(lo, hi, perms, path) of the host mapping holding va, read now, or None."""
    with open("/proc/self/maps") as f:
        for line in f:
            dash = line.index("-")
            lo = int(line[:dash], 16)
            if lo > va:
                return None
            sp = line.index(" ", dash)
            hi = int(line[dash + 1:sp], 16)
            if va < hi:
                fields = line.split(None, 5)
                return lo, hi, fields[1], fields[5].strip() if len(fields) > 5 else ""
    return None


class _PageTables:
    """x86-64 4-level page tables for an identity (guest VA == host VA) map.

    Tables live in a host mmap; each 4 KiB table and each mapped host page
    gets its own guest-physical address, registered with Bochs."""

    def __init__(self, mem, max_tables: int = 32768):
        self.mem = mem
        self.max_tables = max_tables
        self.pool = mmap.mmap(-1, max_tables * PAGE)      # touched lazily
        self.pool_addr = ctypes.addressof(ctypes.c_char.from_buffer(self.pool))
        self.q = (ctypes.c_uint64 * (max_tables * 512)).from_buffer(self.pool)
        self.next_gpa = 0x10_0000
        self.gpa_of_table: list[int] = []
        self.table_of_gpa: dict[int, int] = {}
        self.mapped = 0
        self.root = self._table()

    def close(self):
        del self.q
        self.pool.close()

    def _gpa(self) -> int:
        g = self.next_gpa
        if 0xFEC0_0000 <= g < 0x1_0000_0000:        # stay clear of the APIC windows
            g = 0x1_0000_0000
        self.next_gpa = g + PAGE
        return g

    def _table(self) -> int:
        i = len(self.gpa_of_table)
        if i >= self.max_tables:
            raise EmuCrash("emu512: page-table pool exhausted")
        g = self._gpa()
        self.mem.page_insert(g, self.pool_addr + i * PAGE)
        self.gpa_of_table.append(g)
        self.table_of_gpa[g] = i
        return i

    @property
    def cr3(self) -> int:
        return self.gpa_of_table[self.root]

    def _pte(self, va: int, create: bool):
        t = self.root
        for shift in (39, 30, 21):
            slot = t * 512 + ((va >> shift) & 511)
            e = self.q[slot]
            if e & 1:
                t = self.table_of_gpa[e & _ADDR]
            elif create:
                child = self._table()
                self.q[slot] = self.gpa_of_table[child] | 0x3       # present, writable
                t = child
            else:
                return None
        return t * 512 + ((va >> 12) & 511)

    def state(self, va: int):
        """(writable, executable) of va's mapping, or None if unmapped."""
        i = self._pte(va, False)
        if i is None or not self.q[i] & 1:
            return None
        e = self.q[i]
        return bool(e & 2), not (e & _NX)

    def map(self, va: int, writable: bool, executable: bool):
        va &= ~(PAGE - 1)
        i = self._pte(va, True)
        if self.q[i] & 1:
            gpa = self.q[i] & _ADDR                 # re-map: new permissions only
        else:
            gpa = self._gpa()
            self.mem.page_insert(gpa, va)
            self.mapped += 1
        self.q[i] = gpa | 1 | (2 if writable else 0) | (0 if executable else _NX)


# exception vectors that push an error code
_WITH_ERROR = frozenset((8, 10, 11, 12, 13, 14, 17, 21))
_NAMES = {0: "#DE divide error", 1: "#DB", 3: "#BP", 6: "#UD invalid opcode",
          12: "#SS stack fault", 13: "#GP general protection", 17: "#AC alignment check",
          19: "#XM SIMD floating-point exception"}


class Emu512:
    """One emulated CPU that runs ``void fn(void *arg)`` of this process."""

    def __init__(self, objects=(), stack_bytes: int = 8 << 20, trace: bool = False):
        self.trace = trace
        self.lock = threading.RLock()
        self.stats = {"calls": 0, "faults": 0, "callouts": 0, "pages": 0}
        self.exec_objects = {os.path.realpath(p) for p in objects}
        self.pt = _PageTables(bochscpu.memory)
        # system pages: GDT, IDT, TSS, the interrupt stack (IST1), and the
        # handler address, which is never mapped
        self.sys = mmap.mmap(-1, 8 * PAGE)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self.sys))
        self.gdt, self.idt, self.tss = base, base + PAGE, base + 2 * PAGE
        self.ist_lo, self.ist_hi = base + 3 * PAGE, base + 7 * PAGE
        self.handler = base + 7 * PAGE
        self._write_descriptors()
        for va, w in ((self.gdt, True), (self.idt, False), (self.tss, True)):
            self.pt.map(va, w, False)
        for va in range(self.ist_lo, self.ist_hi, PAGE):
            self.pt.map(va, True, False)
        # the guest's own stack; the return address of every call is the
        # sentinel, an address in no mapping
        self.stack = mmap.mmap(-1, stack_bytes)
        self.stack_lo = ctypes.addressof(ctypes.c_char.from_buffer(self.stack))
        self.stack_hi = self.stack_lo + stack_bytes
        for va in range(self.stack_lo, self.stack_hi, PAGE):
            self.pt.map(va, True, False)
        self.sentinel = self.handler + PAGE
        self.callouts: dict[int, tuple] = {}
        self._register_callouts()
        self.session = bochscpu.Session()
        self.session.missing_page_handler = self._unknown_gpa
        self.hook = bochscpu.Hook()
        self.hook.exception = self._on_exception
        self._exc = None
        # bochscpu keeps a pointer into the Session: drop it while the
        # interpreter is alive (a Session alive at exit crashes the exit)
        atexit.register(self.close)

    # ------------------------------------------------------------- set-up
    def _write_descriptors(self):
        # GDT: null, 64-bit code (0x08), data (0x10), 64-bit TSS (0x18, 16 bytes)
        t = self.tss
        tss_desc_lo = (0x67 | ((t & 0xFFFFFF) << 16) | (0x89 << 40) | (((t >> 24) & 0xFF) << 56))
        gdt = [0, 0x00AF9B000000FFFF, 0x00CF93000000FFFF, tss_desc_lo, t >> 32]
        self.sys[0:8 * len(gdt)] = struct.pack(f"<{len(gdt)}Q", *gdt)
        # IDT: 256 interrupt gates to the handler address, all on IST1
        h = self.handler
        gate = struct.pack("<HHBBHII", h & 0xFFFF, 0x08, 1, 0x8E, (h >> 16) & 0xFFFF,
                           h >> 32, 0)
        self.sys[PAGE:2 * PAGE] = gate * 256
        # TSS: IST1 (offset 0x24) = top of the interrupt stack
        struct.pack_into("<Q", self.sys, 2 * PAGE + 0x24, self.ist_hi - 64)

    def _register_callouts(self):
        vp, sz = ctypes.c_void_p, ctypes.c_size_t

        def add(lib, name, restype, argtypes, kind="native"):
            f = getattr(lib, name, None)
            if f is None:
                return
            addr = ctypes.cast(f, ctypes.c_void_p).value
            if kind == "native":
                f.restype, f.argtypes = restype, argtypes
            self.callouts[addr] = (name, kind, f, len(argtypes))

        for name, res, args in (("malloc", vp, [sz]), ("free", None, [vp]),
                                ("calloc", vp, [sz, sz]), ("realloc", vp, [vp, sz]),
                                ("aligned_alloc", vp, [sz, sz]),
                                ("posix_memalign", ctypes.c_int, [vp, sz, sz]),
                                ("memcpy", vp, [vp, vp, sz]), ("memmove", vp, [vp, vp, sz]),
                                ("memset", vp, [vp, ctypes.c_int, sz])):
            add(_libc, name, res, args)
        try:
            gomp = ctypes.CDLL("libgomp.so.1")
        except OSError:
            return
        for name in ("omp_get_thread_num", "omp_get_num_threads", "omp_get_max_threads",
                     "omp_in_parallel", "omp_get_level"):
            add(gomp, name, ctypes.c_int, [])
        add(gomp, "GOMP_barrier", None, [], kind="nop")
        add(gomp, "GOMP_parallel", None, [vp, vp, ctypes.c_uint, ctypes.c_uint],
            kind="parallel")

    def close(self):
        if getattr(self, "session", None) is not None:
            self.session.missing_page_handler = lambda gpa: None
            self.hook = None
            self.session = None
            import gc
            gc.collect()

    # ------------------------------------------------------------- paging
    @staticmethod
    def _unknown_gpa(gpa):
        raise EmuCrash(f"emu512: Bochs touched an unknown guest-physical page {gpa:#x}")

    def _fault_in(self, va: int):
        """Map the host region around va with the host's permissions; returns
        (writable, executable) or None if the host has nothing readable there."""
        r = _host_region(va)
        if r is None or "r" not in r[2]:
            return None
        lo, hi, perms, path = r
        w = "w" in perms
        x = ("x" in perms and path.startswith("/")
             and os.path.realpath(path) in self.exec_objects)
        page = va & ~(PAGE - 1)
        for p in range(max(lo, page - 64 * PAGE), min(hi, page + 448 * PAGE), PAGE):
            if self.pt.state(p) != (w, x):
                self.pt.map(p, w, x)
        self.stats["pages"] = self.pt.mapped
        return w, x

    # ------------------------------------------------------------- running
    def _on_exception(self, session, cpu_id, vector, error_code):
        if self._exc is None:
            cr2 = session.cpu.cr2 if int(vector) == 14 else 0
            self._exc = (int(vector), int(error_code), cr2)
            if not (int(vector) == 14 and cr2 == self.handler):
                return                         # deliver it (to the handler address)
        session.stop()

    def _state(self, rip: int, rdi: int, rsp: int):
        st = bochscpu.State()
        bochscpu.cpu.set_long_mode(st)
        st.cr0 &= ~(1 << 18)                              # no alignment checks
        st.cr4 = st.cr4 | 0x200 | 0x400 | 0x40000         # OSFXSR, OSXMMEXCPT, OSXSAVE
        st.xcr0 = 0xE7                      # x87, SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM
        st.cr3 = self.pt.cr3
        st.mxcsr, st.mxcsr_mask, st.fpcw, st.rflags = 0x1F80, 0xFFFF, 0x37F, 0x2
        st.rip, st.rdi, st.rsp = rip, rdi, rsp

        def seg(selector, attr, base=0):
            s = bochscpu.Segment()
            s.present, s.selector, s.base, s.limit, s.attr = True, selector, base, 0xFFFFFFFF, attr
            return s

        st.cs = seg(0x08, 0xA09B)
        st.ss = st.ds = st.es = st.gs = seg(0x10, 0xC093)
        st.fs = seg(0x10, 0xC093, _fs_base())
        tr = bochscpu.Segment()
        tr.present, tr.selector, tr.base, tr.limit, tr.attr = True, 0x18, self.tss, 0x67, 0x8B
        st.tr = tr
        g = bochscpu.GlobalSegment()
        g.base, g.limit = self.gdt, 5 * 8 - 1
        st.gdtr = g
        i = bochscpu.GlobalSegment()
        i.base, i.limit = self.idt, 256 * 16 - 1
        st.idtr = i
        return st

    def _crash(self, what: str, rip=None, addr=None):
        c = self.session.cpu
        regs = " ".join(f"{n}={getattr(c, n):#x}" for n in (
            "rsp", "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11",
            "r12", "r13", "r14", "r15"))
        lines = [f"emu512: {what}"]
        if rip is not None:
            lines.append(f"  at rip={rip:#x} ({symbol_at(rip)})")
        if addr is not None:
            lines.append(f"  address {addr:#x} ({symbol_at(addr)})")
        lines.append("  " + regs)
        raise EmuCrash("\n".join(lines))

    def call(self, fn: int, arg: int, max_faults: int = 1_000_000) -> int:
        """Run ``fn(arg)`` on the emulated CPU; returns rax or raises EmuCrash."""
        with self.lock:
            self.stats["calls"] += 1
            rsp = ((self.stack_hi - 256) & ~0xF) - 8          # as after a `call`
            ctypes.c_uint64.from_address(rsp).value = self.sentinel
            cpu = self.session.cpu
            cpu.state = self._state(fn, arg, rsp)
            last = None
            for _ in range(max_faults):
                self._exc = None
                self.session.run([self.hook])
                if self._exc is None:
                    self._crash("the CPU stopped without an exception")
                vector, err, cr2 = self._exc
                st = cpu.state
                if vector == 14 and cr2 == self.handler and st.rip != self.handler:
                    self._crash("exception while delivering an exception", rip=st.rip)
                if st.rip != self.handler:
                    self._crash(f"exception {vector} was not delivered", rip=st.rip)
                # the frame on the interrupt stack: [error code] rip cs rflags rsp ss
                frame = struct.unpack_from("<6Q", ctypes.string_at(st.rsp, 48))
                if vector in _WITH_ERROR:
                    frame = frame[1:]
                f_rip, _cs, f_rflags, f_rsp = frame[:4]
                st.rip, st.rsp, st.rflags = f_rip, f_rsp, f_rflags
                cpu.state = st
                if vector != 14:
                    self._crash(f"CPU exception {vector} ({_NAMES.get(vector, '?')}), "
                                f"error code {err:#x}", rip=f_rip)
                self.stats["faults"] += 1
                fetch, write = bool(err & 0x10), bool(err & 0x2)
                if self.trace:
                    print(f"[emu512] #PF err={err:#x} rip={f_rip:#x} ({symbol_at(f_rip)}) "
                          f"cr2={cr2:#x}", file=sys.stderr, flush=True)
                if fetch and cr2 == self.sentinel:
                    return st.rax                               # fn returned
                if fetch and cr2 == f_rip and cr2 in self.callouts:
                    self._callout(st, cr2)
                    cpu.state = st
                    last = None
                    continue
                key = (f_rip, cr2, err)
                repeated, last = key == last, key
                perm = self._fault_in(cr2)
                kind = "instruction fetch" if fetch else "write" if write else "read"
                if perm is None:
                    self._crash(f"segmentation fault: {kind} of memory the host has not "
                                f"mapped", rip=f_rip, addr=cr2)
                if write and not perm[0]:
                    self._crash("segmentation fault: write to memory the host maps "
                                "read-only", rip=f_rip, addr=cr2)
                if fetch and not perm[1]:
                    self._crash("jump to code outside the emulated objects that is not a "
                                "known call-out", rip=f_rip, addr=cr2)
                if repeated:
                    self._crash(f"page fault (error code {err:#x}) repeats after mapping",
                                rip=f_rip, addr=cr2)
            self._crash("too many page faults in one call")

    def _callout(self, st, addr: int):
        name, kind, f, nargs = self.callouts[addr]
        self.stats["callouts"] += 1
        args = [st.rdi, st.rsi, st.rdx, st.rcx, st.r8, st.r9][:nargs]
        if self.trace:
            print(f"[emu512] call-out {name}({', '.join(hex(a) for a in args)})",
                  file=sys.stderr, flush=True)
        if kind == "parallel":
            # GOMP_parallel(fn, data, nthreads, flags): the body, once, in the guest;
            # it returns straight to GOMP_parallel's caller
            st.rip, st.rdi = args[0], args[1]
            return
        res = 0
        if kind == "native":
            r = f(*args)
            res = 0 if r is None else int(r) & ((1 << 64) - 1)
        st.rax = res
        st.rip = ctypes.c_uint64.from_address(st.rsp).value        # return
        st.rsp += 8


# ----------------------------------------------------------------------------- install

#: crash reports of emulated kernel calls (the pytest plugin fails the test)
CRASHES: list[str] = []
_EMU: Emu512 | None = None


def emulator() -> Emu512 | None:
    return _EMU


def install(core_file: str) -> Emu512:
    """Register the emulator as the test seam's runner of the csoftmax
    extension at ``core_file`` (a build with CSOFTMAX_TEST_SEAM=1)."""
    global _EMU
    if _EMU is not None:
        return _EMU
    lib = ctypes.CDLL(core_file)
    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    objects = [object_of(ctypes.cast(lib.csm_seam_install, ctypes.c_void_p).value),
               object_of(ctypes.cast(libm.exp, ctypes.c_void_p).value)]
    emu = Emu512(objects, trace=bool(os.environ.get("EMU512_TRACE")))

    @ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
    def runner(fn, arg):
        try:
            emu.call(fn, arg)
            return 0
        except BaseException as e:               # noqa: BLE001 -- reported, not raised
            msg = f"{type(e).__name__}: {e}"
            CRASHES.append(msg)
            print(msg, file=sys.stderr, flush=True)
            return 1

    emu.runner = runner                          # keep the callback alive
    lib.csm_seam_install.argtypes = [ctypes.c_void_p]
    lib.csm_seam_install.restype = ctypes.c_int
    st = lib.csm_seam_install(ctypes.cast(runner, ctypes.c_void_p))
    if st != 0:
        raise EmuCrash(f"csm_seam_install returned {st}: not a CSOFTMAX_TEST_SEAM build")
    _EMU = emu
    return emu
