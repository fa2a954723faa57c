"""The compiled hot path, ``tradelake._hotpath``: built for this machine and for Lambda, shipped
right (DEVELOPERS.md, "The compiled hot path").

One C file, two builds: the host's, compiled in place by the editable install (setup.py), and the
Lambda's (python3.12 on aarch64, glibc 2.34), cross-compiled with zig by `make package`. Both may
use only CPython's stable ABI: that is what lets the Lambda's build be compiled against this
machine's headers, and load on a CPython it was never built with.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from packaged import ROOT, load_script

SOURCE_DIR = ROOT / "layers" / "core" / "python" / "tradelake"
SOURCE = SOURCE_DIR / "_hotpath.c"
HOST_BUILD = SOURCE_DIR / "_hotpath.abi3.so"
LAMBDA_NAME = "_hotpath.cpython-312-aarch64-linux-gnu.so"
LAMBDA_MEMBER = f"python/tradelake/{LAMBDA_NAME}"
ARM64_ROOT = Path("/opt/tradelake-arm64")  # the Makefile's ARM64_ROOT (scripts/arm64_python.sh)

check_layer = load_script("check_layer")

# The private (underscore) names of the stable ABI that the limited API's own macros and
# functions reach (Py_DECREF, Py_None, PyArg_ParseTuple with PY_SSIZE_T_CLEAN, ...): the
# `abi_only` entries of CPython's Misc/stable_abi.toml up to 3.11, less the debug-build ones.
STABLE_PRIVATE = frozenset(
    {
        "_PyArg_ParseTupleAndKeywords_SizeT",
        "_PyArg_ParseTuple_SizeT",
        "_PyArg_Parse_SizeT",
        "_PyArg_VaParseTupleAndKeywords_SizeT",
        "_PyArg_VaParse_SizeT",
        "_PyErr_BadInternalCall",
        "_PyObject_CallFunction_SizeT",
        "_PyObject_CallMethod_SizeT",
        "_PyObject_GC_New",
        "_PyObject_GC_NewVar",
        "_PyObject_GC_Resize",
        "_PyObject_New",
        "_PyObject_NewVar",
        "_PyState_AddModule",
        "_PyWeakref_CallableProxyType",
        "_PyWeakref_ProxyType",
        "_PyWeakref_RefType",
        "_Py_BuildValue_SizeT",
        "_Py_CheckRecursiveCall",
        "_Py_Dealloc",
        "_Py_DecRef",
        "_Py_EllipsisObject",
        "_Py_FalseStruct",
        "_Py_IncRef",
        "_Py_NoneStruct",
        "_Py_NotImplementedStruct",
        "_Py_SwappedOp",
        "_Py_TrueStruct",
        "_Py_VaBuildValue_SizeT",
    }
)

needs_readelf = pytest.mark.skipif(
    shutil.which("readelf") is None,
    reason="readelf (Debian's binutils) is not installed: the symbol checks of the compiled hot"
    " path are SKIPPED (apt-get install binutils)",
)


def _readelf(*args: str) -> str:
    return subprocess.run(
        ["readelf", "-W", *args], capture_output=True, text=True, check=True
    ).stdout


def dynamic_symbols(path: Path) -> tuple[set[str], set[str]]:
    """(defined, undefined) global symbols of an ELF object's dynamic symbol table; an undefined
    one from a versioned library keeps its version (``memcpy@GLIBC_2.17``). Weak undefined
    symbols are left out: the loader tolerates their absence."""
    defined: set[str] = set()
    undefined: set[str] = set()
    for line in _readelf("--dyn-syms", str(path)).splitlines():
        fields = line.split()
        if len(fields) < 8 or not fields[0].rstrip(":").isdigit() or fields[4] != "GLOBAL":
            continue
        (undefined if fields[6] == "UND" else defined).add(fields[7])
    return defined, undefined


def needed_libraries(path: Path) -> list[str]:
    return [
        line.split("[", 1)[1].rstrip("]")
        for line in _readelf("--dynamic", str(path)).splitlines()
        if "(NEEDED)" in line
    ]


@pytest.fixture(scope="module")
def lambda_build(artifact, tmp_path_factory) -> Path:
    """The Lambda's build as the packaged core layer holds it."""
    target = tmp_path_factory.mktemp("core") / LAMBDA_NAME
    with artifact("core.zip") as zf:
        target.write_bytes(zf.read(LAMBDA_MEMBER))
    return target


def test_this_interpreter_imports_a_build_of_the_current_source_from_the_source_tree():
    """The editable install's in-place build (on CPython 3.12 on aarch64 that is the Lambda's,
    whose tag it tries first: as good, built from the same file)."""
    module = importlib.import_module("tradelake._hotpath")
    loaded = Path(module.__file__ or "")
    assert loaded.parent == SOURCE_DIR, loaded
    assert HOST_BUILD.exists()
    # An edited C file is rebuilt by `make test` / `make bench` (or `make hotpath`).
    assert loaded.stat().st_mtime >= SOURCE.stat().st_mtime, "stale build: run `make hotpath`"


def test_the_core_layer_ships_the_lambda_build_and_no_other_binary_or_source(artifact):
    with artifact("core.zip") as zf:
        names = zf.namelist()
        elf = [n for n in names if zf.read(n)[:4] == check_layer.ELF_MAGIC]
        head = zf.read(LAMBDA_MEMBER)
    assert elf == [LAMBDA_MEMBER]
    assert not [n for n in names if n.endswith((".c", ".h", ".o"))]
    assert check_layer.elf_problem(head) is None  # 64-bit little-endian aarch64
    assert check_layer.extension_tag_problem(LAMBDA_NAME) is None
    assert check_layer.glibc_problem(head) is None  # nothing newer than Amazon Linux 2023's


@needs_readelf
def test_the_symbol_versions_read_from_the_bytes_are_readelf_s(lambda_build):
    listed = [
        line.split("Name:", 1)[1].split()[0]
        for line in _readelf("--version-info", str(lambda_build)).splitlines()
        if "Name:" in line
    ]
    assert [v.decode() for v in check_layer.needed_versions(lambda_build.read_bytes())] == listed


@needs_readelf
@pytest.mark.parametrize("build", ["host", "lambda"])
def test_a_build_needs_only_the_stable_abi_and_the_c_library(build, lambda_build):
    """Undefined symbols are CPython's (resolved from the interpreter that loads the module) or
    versioned C library ones; none is a CPython internal, and libpython is never linked."""
    path = HOST_BUILD if build == "host" else lambda_build
    defined, undefined = dynamic_symbols(path)
    assert "PyInit__hotpath" in defined  # what `import tradelake._hotpath` calls
    python = {s for s in undefined if s.startswith(("Py", "_Py"))}
    others = undefined - python
    assert python, "no CPython symbol at all: not the extension module"
    assert {s for s in others if "@GLIBC_" not in s} == set()  # no libgcc, no sanitizer runtime
    assert {s for s in python if s.startswith("_")} <= STABLE_PRIVATE
    assert {s for s in python if not hasattr(ctypes.pythonapi, s)} == set()
    assert not [lib for lib in needed_libraries(path) if lib.startswith("libpython")]


def test_an_edited_source_rebuilds_both_builds():
    """`make -n -W file` prints what make would run were the file just edited, running nothing."""
    source = str(SOURCE.relative_to(ROOT))
    for target in ("test", "bench"):
        plan = subprocess.run(
            ["make", "-n", "-W", source, target],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "pip install --quiet --disable-pip-version-check --no-deps -e ." in plan
        assert "ziglang cc -target aarch64-linux-gnu.2.34" in plan
        assert "osls package" in plan  # and the new build is packaged


# Run by the arm64 CPython: normalise.fills of plain integer rows, and which module did the work.
PROBE = """
import json
from tradelake import hotpath, normalise
from tradelake.markets import Instrument, Market
rows = [[1_700_000_000_000_000_000 + i, "Buy" if i % 3 else "Sell", 2_000_000 + 7 * i, 1 + i]
        for i in range(100)]
fills, bad = normalise.fills(Instrument("BTCUSD", Market.INVERSE, 4, 0), rows)
module = getattr(hotpath.compiled, "__file__", None)
print(json.dumps({"module": module, "fills": [list(f) for f in fills], "bad": bad}))
"""


def _arm64_python() -> list[str] | None:
    """The command that runs Debian's arm64 CPython under qemu, if `make system-deps` set it up."""
    qemu = shutil.which("qemu-aarch64-static")
    pythons = sorted(ARM64_ROOT.glob("usr/bin/python3.*"))
    if qemu is None or not pythons or not (ARM64_ROOT / ".complete").exists():
        return None
    return [qemu, "-L", str(ARM64_ROOT), str(pythons[0])]


def test_the_lambda_build_runs_on_arm64_cpython_under_emulation(artifact, tmp_path):
    """The packaged aarch64 build loads in a real aarch64 CPython and computes what the pure
    Python computes there. Debian's CPython is 3.11, not Lambda's 3.12, so the module goes by its
    abi3 name, which any CPython >= 3.11 loads (the 3.12 tag is for 3.12 only)."""
    command = _arm64_python()
    if command is None:
        pytest.skip(
            f"qemu-aarch64-static or the arm64 CPython in {ARM64_ROOT} is missing: the emulated"
            " run of the Lambda's hot path build is SKIPPED (sudo make system-deps)"
        )
    with artifact("core.zip") as zf:
        zf.extractall(tmp_path)
    package = tmp_path / "python" / "tradelake"
    (package / LAMBDA_NAME).rename(package / "_hotpath.abi3.so")

    def run(**env: str) -> dict:
        done = subprocess.run(
            [*command, "-c", PROBE],
            env={"PYTHONPATH": str(tmp_path / "python"), **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    compiled, pure = run(), run(TRADELAKE_PURE_PYTHON="1")
    assert compiled["module"] == str(package / "_hotpath.abi3.so")
    assert pure["module"] is None
    assert compiled["bad"] == pure["bad"] == 0
    assert len(compiled["fills"]) == 100
    assert compiled["fills"] == pure["fills"]
