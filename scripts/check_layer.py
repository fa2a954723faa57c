"""Fail the build if a Lambda layer holds anything that cannot run on python3.12 / arm64.

The Lambda functions run CPython 3.12 on Graviton (aarch64, Amazon Linux 2023). A wheel built for
the host (x86_64, or another CPython) installs without complaint and only fails at import time in
AWS, so `make layer` runs this on what it built:

- every ELF file (any ``*.so``, whatever its name) is a 64-bit little-endian aarch64 object:
  the header's ``e_machine`` is 183 (EM_AARCH64), read from the bytes, not trusted from a name;
- every extension module's filename tag is ``cpython-312-aarch64-linux-gnu`` or ``abi3``
  (an untagged ``name.so`` is treated as a plain shared library: ELF check only);
- no ELF file needs a glibc symbol version newer than the runtime's (2.34), read from its
  ``.gnu.version_r`` section: a wheel's tag only claims this, and our own build (the hot path,
  cross-compiled by zig) has no tag to claim it;
- no ``.pyd`` / ``.dylib`` (Windows, macOS);
- every ``*.dist-info/WHEEL`` has a tag that is pure Python, cp312, or abi3 for CPython <= 3.12,
  on ``any`` or a ``manylinux*_aarch64`` platform whose glibc the runtime has (2.34);
- no distribution that must never ship (the runtime's boto3/botocore, the local-only pyarrow,
  duckdb and websockets);
- the unzipped size leaves room under Lambda's 250 MB limit for functions and layers together.

    python scripts/check_layer.py layers/deps/python [.serverless/core.zip ...]

A root is a layer's ``python/`` directory or a packaged layer zip (checked unpacked: what ships).
"""

from __future__ import annotations

import argparse
import re
import struct
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

EM_AARCH64 = 183
ELF_MAGIC = b"\x7fELF"
ELFCLASS64 = 2
ELFDATA2LSB = 1
SHT_GNU_VERNEED = 0x6FFFFFFE
EXTENSION_TAGS = ("cpython-312-aarch64-linux-gnu", "abi3")
PYTHON_MINOR = 12
RUNTIME_GLIBC = (2, 34)  # Amazon Linux 2023, the OS of the python3.12 runtime
# Distributions (normalised names) that must never be in a layer.
FORBIDDEN = {
    "boto3": "in the Lambda runtime; a copy in a layer would shadow it",
    "botocore": "in the Lambda runtime; a copy in a layer would shadow it",
    "s3transfer": "in the Lambda runtime; a copy in a layer would shadow it",
    "pyarrow": "local lake only: never shipped to Lambda",
    "duckdb": "local lake only: never shipped to Lambda",
    "websockets": "the simulator's server library: never shipped to Lambda",
}
MAX_BYTES = 200 * 1024 * 1024  # of 250 MB for the functions and all layers, unzipped

_EXTENSION = re.compile(r"^(?P<module>[^.]+)\.(?P<tag>[^.]+)\.so$")
_SHARED_OBJECT = re.compile(r"\.so(\.\d+)*$")
_ELF_MACHINES = {3: "x86 (i386)", 40: "arm (32-bit)", 62: "x86_64", 183: "aarch64"}
_GLIBC_VERSION = re.compile(rb"GLIBC_(\d+)\.(\d+)(?:\.\d+)?")


@dataclass(frozen=True, slots=True)
class Problem:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def elf_problem(data: bytes) -> str | None:
    """Why an ELF header (the first 20 bytes or more) is not a 64-bit LE aarch64 object."""
    if len(data) < 20 or not data.startswith(ELF_MAGIC):
        return "not an ELF file"
    if data[4] != ELFCLASS64:
        return "32-bit ELF, expected 64-bit aarch64"
    if data[5] != ELFDATA2LSB:
        return "big-endian ELF, expected little-endian aarch64"
    (machine,) = struct.unpack_from("<H", data, 18)
    if machine != EM_AARCH64:
        name = _ELF_MACHINES.get(machine, "unknown")
        return f"ELF e_machine {machine} ({name}), expected {EM_AARCH64} (aarch64)"
    return None


def needed_versions(data: bytes) -> list[bytes]:
    """The symbol versions (``GLIBC_2.17``, ...) a 64-bit LE ELF object needs from the libraries
    it links: the names in its ``.gnu.version_r`` (SHT_GNU_verneed) section."""
    shoff, shentsize, shnum = struct.unpack_from("<Q10xHH", data, 0x28)
    sections = [struct.unpack_from("<IIQQQQII", data, shoff + i * shentsize) for i in range(shnum)]
    names: list[bytes] = []
    for _, kind, _, _, offset, _, link, count in sections:
        if kind != SHT_GNU_VERNEED:
            continue
        strings = sections[link][4]  # the string table's sh_offset
        need = offset
        for _ in range(count):  # Elf64_Verneed: version, cnt, file, aux, next
            _, n_aux, _, aux, next_need = struct.unpack_from("<HHIII", data, need)
            entry = need + aux
            for _ in range(n_aux):  # Elf64_Vernaux: hash, flags, other, name, next
                _, _, _, name, next_aux = struct.unpack_from("<IHHII", data, entry)
                start = strings + name
                names.append(data[start : data.index(b"\0", start)])
                entry += next_aux
            need += next_need
    return names


def glibc_problem(data: bytes) -> str | None:
    """Why a 64-bit LE ELF object would not load on the runtime's glibc (2.34)."""
    try:
        versions = needed_versions(data)
    except (struct.error, IndexError, ValueError):
        return "malformed ELF: cannot read the symbol versions it needs"
    newest = max(
        ((int(m[1]), int(m[2])) for v in versions if (m := _GLIBC_VERSION.fullmatch(v))),
        default=None,
    )
    if newest is not None and newest > RUNTIME_GLIBC:
        return (
            f"needs glibc {newest[0]}.{newest[1]} (symbol version GLIBC_{newest[0]}.{newest[1]}),"
            f" newer than the runtime's {RUNTIME_GLIBC[0]}.{RUNTIME_GLIBC[1]}"
        )
    return None


def extension_tag_problem(name: str) -> str | None:
    """Why an extension module's filename tag does not load on CPython 3.12 / aarch64."""
    match = _EXTENSION.match(name)
    if match is None:
        return None  # untagged: a plain shared library, the ELF check decides
    tag = match["tag"]
    if tag in EXTENSION_TAGS:
        return None
    return f"extension tag {tag!r}, expected one of {', '.join(EXTENSION_TAGS)}"


def _platform_problem(platform: str) -> str | None:
    if platform == "any":
        return None
    match = re.fullmatch(r"manylinux(1|2010|2014|_(\d+)_(\d+))_(\w+)", platform)
    if match is None or match[4] != "aarch64":
        return f"wheel platform {platform!r}, expected any or manylinux*_aarch64 (glibc)"
    legacy = {"1": (2, 5), "2010": (2, 12), "2014": (2, 17)}
    glibc = legacy.get(match[1]) or (int(match[2]), int(match[3]))
    if glibc > RUNTIME_GLIBC:
        return (
            f"wheel platform {platform!r} needs glibc {glibc[0]}.{glibc[1]}, newer than the"
            f" runtime's {RUNTIME_GLIBC[0]}.{RUNTIME_GLIBC[1]}"
        )
    return None


def _python_abi_problem(python: str, abi: str) -> str | None:
    version = re.fullmatch(r"(py|cp)3(\d*)", python)
    minor = int(version[2]) if version and version[2] else None
    if abi == "none" and version and version[1] == "py" and (minor or 0) <= PYTHON_MINOR:
        return None
    if abi == "abi3" and version and version[1] == "cp" and minor and minor <= PYTHON_MINOR:
        return None
    if abi == "cp312" and python == "cp312":
        return None
    return f"wheel python {python!r} with abi {abi!r}, expected py3/none, cp312/cp312 or abi3"


def wheel_tag_problem(tag: str) -> str | None:
    """Why a wheel tag (``python-abi-platform``, maybe compressed: ``py2.py3-none-any``) does
    not fit CPython 3.12 on manylinux aarch64; None if one of the tags it stands for fits."""
    try:
        pythons, abis, platforms = tag.split("-")
    except ValueError:
        return f"malformed wheel tag {tag!r}"
    reasons: list[str] = []
    for python in pythons.split("."):
        for abi in abis.split("."):
            for platform in platforms.split("."):
                reason = _platform_problem(platform) or _python_abi_problem(python, abi)
                if reason is None:
                    return None
                reasons.append(reason)
    return reasons[0]


def _distribution(top: str) -> str:
    """The normalised distribution name of a top-level entry of a layer's python/ directory."""
    name = top
    for suffix in (".dist-info", ".data", ".libs", ".py"):
        name = name.removesuffix(suffix)
    return re.sub(r"[-_.]+", "-", name.split("-")[0]).lower()


def _files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path


def _wheel_problems(path: Path) -> Iterator[str]:
    """A wheel fits if one of its tags does (``py2-none-any`` beside ``py3-none-any`` is fine)."""
    tags = [
        line.split(":", 1)[1].strip()
        for line in path.read_text().splitlines()
        if line.startswith("Tag:")
    ]
    reasons = [reason for tag in tags if (reason := wheel_tag_problem(tag))]
    if not tags:
        yield "no Tag in WHEEL"
    elif len(reasons) == len(tags):
        yield f"no wheel tag fits CPython 3.12 on linux aarch64: {'; '.join(reasons)}"


def check(roots: Iterable[Path]) -> tuple[list[Problem], dict[str, int]]:
    """All the problems found under ``roots``, and counts of what was looked at."""
    roots = list(roots)
    problems: list[Problem] = []
    stats = {"files": 0, "bytes": 0, "elf": 0, "wheels": 0}
    for root in roots:
        if not root.is_dir():
            problems.append(Problem(root, "not a directory (run `make layer`)"))
            continue
        for top in sorted(root.iterdir()):
            if (name := _distribution(top.name)) in FORBIDDEN:
                problems.append(Problem(top, f"{name}: {FORBIDDEN[name]}"))
        for path in _files(root):
            stats["files"] += 1
            stats["bytes"] += path.stat().st_size
            if path.suffix in {".pyd", ".dylib"}:
                problems.append(Problem(path, f"{path.suffix} is not a Linux binary"))
                continue
            with path.open("rb") as f:
                head = f.read(64)
            if head.startswith(ELF_MAGIC):
                stats["elf"] += 1
                if reason := elf_problem(head) or glibc_problem(path.read_bytes()):
                    problems.append(Problem(path, reason))
                if reason := extension_tag_problem(path.name):
                    problems.append(Problem(path, reason))
            elif _SHARED_OBJECT.search(path.name):
                problems.append(Problem(path, "named like a shared object but not an ELF file"))
            if path.name == "WHEEL" and path.parent.name.endswith(".dist-info"):
                stats["wheels"] += 1
                problems.extend(Problem(path, reason) for reason in _wheel_problems(path))
    if stats["bytes"] > MAX_BYTES:
        problems.append(
            Problem(
                Path("+".join(str(r) for r in roots)),
                f"{stats['bytes'] / 2**20:.0f} MiB unzipped, over the {MAX_BYTES // 2**20} MiB"
                " budget (Lambda allows 250 MB for functions and layers together)",
            )
        )
    return problems, stats


def _unpacked(root: Path, stack: ExitStack) -> Path:
    """A packaged layer zip unpacked into a temporary directory (its python/); a directory as is."""
    if root.suffix != ".zip" or not root.is_file():
        return root
    target = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"{root.name}-")))
    with zipfile.ZipFile(root) as archive:
        archive.extractall(target)
    return target / "python"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "roots", nargs="+", type=Path, help="layer directories (python/ dirs) or layer zips"
    )
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        problems, stats = check(_unpacked(root, stack) for root in args.roots)
    for problem in problems:
        print(f"check_layer: {problem}", file=sys.stderr)
    verdict = "FAILED" if problems else "ok"
    print(
        f"check_layer: {verdict}: {stats['files']} files, {stats['bytes'] / 2**20:.1f} MiB, "
        f"{stats['elf']} ELF (aarch64, glibc <= 2.34 required), {stats['wheels']} wheels"
        f" (cp312/abi3/py3 on linux aarch64 required), {len(problems)} problem(s)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
