"""The compiled hot path, ``tradelake._hotpath``: everything else is in pyproject.toml.

Here because setuptools' pyproject.toml table for C extensions is still experimental. The
module is built against the limited API of CPython 3.11 (abi3), so one build serves every
CPython >= 3.11 on the host; `pip install -e` compiles it in place, as ``_hotpath.abi3.so``.
The Lambda's (aarch64) build is the Makefile's, with zig (DEVELOPERS.md, "The compiled hot path").
"""

from setuptools import Extension, setup

LIMITED_API = "0x030B0000"  # CPython 3.11, the oldest pyproject.toml supports

setup(
    ext_modules=[
        Extension(
            "tradelake._hotpath",
            sources=["layers/core/python/tradelake/_hotpath.c"],
            define_macros=[("Py_LIMITED_API", LIMITED_API)],
            py_limited_api=True,
            # On top of CPython's own flags (-fwrapv -DNDEBUG ...). No -march=native: CI's
            # machine may not be this one, nor a developer's.
            extra_compile_args=["-O2", "-Wall", "-Wextra"],
        )
    ],
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
