"""The type stubs (csoftmax/__init__.pyi) against the runtime, and the package surface.

* every public function's parameters in the stub -- names, order, kinds and
  defaults, in every overload -- match ``inspect.signature`` of the runtime
  function (the .pyi is parsed with ``ast``, not imported);
* the stub and ``py.typed`` are installed next to the package;
* tests/typing_usage.py runs, and passes ``mypy --strict`` against the
  installed package (skipped without mypy);
* ``import csoftmax`` does not import torch; ``import csoftmax.torch`` without
  torch fails with a helpful ImportError.
"""
import ast
import importlib.util
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import csoftmax

HERE = Path(__file__).resolve().parent
PKG_DIR = Path(csoftmax.__file__).resolve().parent
STUB = PKG_DIR / "__init__.pyi"

_KIND = {
    "posonly": inspect.Parameter.POSITIONAL_ONLY,
    "args": inspect.Parameter.POSITIONAL_OR_KEYWORD,
    "vararg": inspect.Parameter.VAR_POSITIONAL,
    "kwonly": inspect.Parameter.KEYWORD_ONLY,
    "kwarg": inspect.Parameter.VAR_KEYWORD,
}
_NO_DEFAULT = object()      # the stub gives no default
_ELLIPSIS = object()        # the stub's default is `...`


def _stub_tree():
    assert STUB.is_file(), f"stub not installed: {STUB}"
    return ast.parse(STUB.read_text(encoding="utf-8"), filename=str(STUB))


def _default(node):
    if node is None:
        return _NO_DEFAULT
    if isinstance(node, ast.Constant) and node.value is Ellipsis:
        return _ELLIPSIS
    return ast.literal_eval(node)


def _params(fn: ast.FunctionDef):
    """[(name, kind, default)] of a stub function, in order."""
    a = fn.args
    out = []
    positional = a.posonlyargs + a.args
    pos_defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    for i, (arg, d) in enumerate(zip(positional, pos_defaults, strict=True)):
        kind = "posonly" if i < len(a.posonlyargs) else "args"
        out.append((arg.arg, _KIND[kind], _default(d)))
    if a.vararg:
        out.append((a.vararg.arg, _KIND["vararg"], _NO_DEFAULT))
    for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True):
        out.append((arg.arg, _KIND["kwonly"], _default(d)))
    if a.kwarg:
        out.append((a.kwarg.arg, _KIND["kwarg"], _NO_DEFAULT))
    return out


def _stub_functions():
    """name -> list of FunctionDef (all overloads) at the stub's top level."""
    funcs = {}
    for node in _stub_tree().body:
        if isinstance(node, ast.FunctionDef):
            funcs.setdefault(node.name, []).append(node)
    return funcs


def _stub_all():
    for node in _stub_tree().body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "__all__"):
            return ast.literal_eval(node.value)
    raise AssertionError("the stub has no __all__")


PUBLIC_FUNCTIONS = [n for n in csoftmax.__all__ if callable(getattr(csoftmax, n))]


def test_stub_all_matches_runtime():
    assert _stub_all() == list(csoftmax.__all__)
    funcs = _stub_functions()
    for name in PUBLIC_FUNCTIONS:
        assert name in funcs, f"{name} is not in the stub"
    tree = _stub_tree()
    names = {t.id for n in tree.body if isinstance(n, (ast.AnnAssign,))
             for t in [n.target] if isinstance(t, ast.Name)}
    assert "__version__" in names


@pytest.mark.parametrize("name", PUBLIC_FUNCTIONS)
def test_stub_signature_matches_runtime(name):
    runtime = list(inspect.signature(getattr(csoftmax, name)).parameters.values())
    overloads = _stub_functions()[name]
    decorated = [any(isinstance(d, ast.Name) and d.id == "overload" for d in f.decorator_list)
                 for f in overloads]
    assert all(decorated) or len(overloads) == 1, f"{name}: mixed overload/plain defs"
    exact_default_overloads = 0
    for k, fn in enumerate(overloads, 1):
        where = f"{name} (stub def #{k}, line {fn.lineno})"
        stub = _params(fn)
        assert [p[0] for p in stub] == [p.name for p in runtime], (
            f"{where}: parameters {[p[0] for p in stub]} != runtime "
            f"{[p.name for p in runtime]}")
        all_defaults_exact = True
        for (sname, skind, sdef), rp in zip(stub, runtime, strict=True):
            # an overload may make a positional-or-keyword parameter keyword-only
            # (to require a Literal after defaulted ones); never the reverse
            ok_kind = skind == rp.kind or (
                rp.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD
                and skind == inspect.Parameter.KEYWORD_ONLY)
            assert ok_kind, f"{where}: {sname} is {skind.name}, runtime {rp.kind.name}"
            if rp.default is inspect.Parameter.empty:
                assert sdef is _NO_DEFAULT, f"{where}: {sname} has no runtime default"
                continue
            if sdef is _ELLIPSIS:
                all_defaults_exact = False
            elif sdef is _NO_DEFAULT:
                # a required parameter in one overload (e.g. return_sign: Literal[True])
                all_defaults_exact = False
            else:
                assert sdef == rp.default and type(sdef) is type(rp.default), (
                    f"{where}: default of {sname} is {sdef!r}, runtime {rp.default!r}")
        exact_default_overloads += all_defaults_exact
    assert exact_default_overloads >= 1, (
        f"{name}: no stub def carries every runtime default (the catch-all overload should)")


def test_show_config_keys_match_typeddict():
    tree = _stub_tree()
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "_Config")
    keys = [n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)]
    cfg = csoftmax.show_config()
    assert list(cfg) == keys
    types = {"str": str, "bool": bool, "int": int, "list[str]": list}
    for n in cls.body:
        assert isinstance(cfg[n.target.id], types[ast.unparse(n.annotation)]), n.target.id
    assert all(isinstance(v, str) for v in cfg["available"])


def test_py_typed_installed():
    assert (PKG_DIR / "py.typed").is_file()


def test_typing_usage_runs():
    spec = importlib.util.spec_from_file_location("csoftmax_typing_usage",
                                                  HERE / "typing_usage.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main()


def test_typing_usage_passes_mypy_strict(tmp_path):
    api = pytest.importorskip("mypy.api")
    # run from an empty directory so that `csoftmax` resolves to the installed
    # package (PEP 561: py.typed + __init__.pyi), not to a source tree
    src = tmp_path / "typing_usage.py"
    src.write_text((HERE / "typing_usage.py").read_text(encoding="utf-8"), encoding="utf-8")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        stdout, stderr, status = api.run(
            ["--strict", "--no-incremental", "--cache-dir", os.devnull,
             "--python-executable", sys.executable, str(src)])
    finally:
        os.chdir(cwd)
    assert status == 0, stdout + stderr


# --------------------------------------------------------------------------- torch stays optional

def _run_py(code, cwd):
    # from an empty directory: the installed package, whatever the caller's cwd
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=str(cwd), timeout=120)


def test_import_csoftmax_does_not_import_torch(tmp_path):
    r = _run_py("import sys, csoftmax; csoftmax.show_config(); "
                "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]; "
                "assert not bad, bad; print('ok')", tmp_path)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_csoftmax_torch_without_torch_says_what_to_install(tmp_path):
    r = _run_py("import sys; sys.modules['torch'] = None\n"
                "try:\n    import csoftmax.torch\n"
                "except ImportError as e:\n    print('ImportError:', e)\n", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ImportError:" in r.stdout and "csoftmax[torch]" in r.stdout, r.stdout
