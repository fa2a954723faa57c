"""scripts/check_layer.py: what makes `make layer` fail, on small fake layers."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import pytest

from packaged import load_script

check_layer = load_script("check_layer")

EM_X86_64 = 62
EM_AARCH64 = 183


def elf(machine: int, elf_class: int = 2, data: int = 1) -> bytes:
    """The first 64 bytes of an ELF shared object for ``machine``."""
    ident = b"\x7fELF" + bytes([elf_class, data, 1, 0]) + bytes(8)
    return ident + struct.pack("<HHI", 3, machine, 1) + bytes(40)


def elf_needing(*versions: str, machine: int = EM_AARCH64) -> bytes:
    """A 64-bit LE ELF object whose ``.gnu.version_r`` says it needs ``versions`` of libc.so.6:
    header, string table, one Elf64_Verneed with its Elf64_Vernaux entries, section headers."""
    strings = b"\0libc.so.6\0" + b"".join(v.encode() + b"\0" for v in versions)
    name_at = [strings.index(v.encode() + b"\0") for v in versions]
    strtab_at = 64
    verneed_at = strtab_at + len(strings) + (-len(strings) % 8)
    verneed = struct.pack("<HHIII", 1, len(versions), 1, 16, 0) + b"".join(
        struct.pack("<IHHII", 0, 0, i + 2, at, 16 if i + 1 < len(versions) else 0)
        for i, at in enumerate(name_at)
    )
    shoff = verneed_at + len(verneed)
    section = "<IIQQQQIIQQ"
    sections = [
        bytes(64),
        struct.pack(section, 0, 3, 0, 0, strtab_at, len(strings), 0, 0, 1, 0),  # SHT_STRTAB
        struct.pack(section, 0, 0x6FFFFFFE, 0, 0, verneed_at, len(verneed), 1, 1, 8, 0),
    ]
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    fields = (3, machine, 1, 0, 0, shoff, 0, 64, 0, 0, 64, len(sections), 0)  # ET_DYN, no phdrs
    header = ident + struct.pack("<HHIQQQIHHHHHH", *fields)
    body = strings + bytes(verneed_at - strtab_at - len(strings)) + verneed
    return header + body + b"".join(sections)


def wheel(tag: str) -> str:
    return f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: {tag}\n"


def make_layer(root: Path, files: dict[str, bytes | str]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
    return root


GOOD = {
    "orjson/__init__.py": "",
    "orjson/orjson.cpython-312-aarch64-linux-gnu.so": elf(EM_AARCH64),
    "orjson-3.13.0.dist-info/WHEEL": wheel("cp312-cp312-manylinux_2_17_aarch64"),
    "cryptography/_rust.abi3.so": elf(EM_AARCH64),
    "tradelake/_hotpath.cpython-312-aarch64-linux-gnu.so": elf_needing("GLIBC_2.17", "GLIBC_2.34"),
    "cryptography-1.0.dist-info/WHEEL": wheel("cp311-abi3-manylinux_2_28_aarch64"),
    "pkg.libs/libz-1234.so.1.2.3": elf(EM_AARCH64),
    "six-1.0.dist-info/WHEEL": wheel("py2-none-any") + "Tag: py3-none-any\n",
    "websocket/__init__.py": "",
}


def problems(root: Path) -> list[str]:
    found, _ = check_layer.check([root])
    return [str(p) for p in found]


def test_a_good_layer_passes(tmp_path):
    assert problems(make_layer(tmp_path, GOOD)) == []
    assert check_layer.main([str(tmp_path)]) == 0


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        (
            "orjson/orjson.cpython-312-aarch64-linux-gnu.so",
            elf(EM_X86_64),
            "e_machine 62 (x86_64)",
        ),  # a host wheel renamed: the bytes decide, not the name
        ("orjson/orjson.cpython-311-aarch64-linux-gnu.so", elf(EM_AARCH64), "cpython-311"),
        ("orjson/orjson.cpython-312-x86_64-linux-gnu.so", elf(EM_AARCH64), "x86_64-linux-gnu"),
        ("pkg.libs/libfoo.so", elf(EM_X86_64), "x86_64"),
        ("pkg/_speedups.so", elf(EM_AARCH64, elf_class=1), "32-bit"),
        ("pkg/_speedups.so", elf(EM_AARCH64, data=2), "big-endian"),
        ("pkg/_speedups.so", b"not an elf at all", "not an ELF"),
        ("pkg/_speedups.pyd", b"MZ", "not a Linux binary"),
        (
            "tradelake/_hotpath.cpython-312-aarch64-linux-gnu.so",
            elf_needing("GLIBC_2.17", "GLIBC_2.38", "GLIBC_2.2.5"),
            "needs glibc 2.38",
        ),  # built for a newer glibc than Amazon Linux 2023's: fails to load there
        ("pkg/_speedups.so", elf_needing("GLIBC_2.17")[:200], "malformed ELF"),
        (
            "pkg-1.0.dist-info/WHEEL",
            wheel("cp312-cp312-manylinux_2_17_x86_64"),
            "manylinux_2_17_x86_64",
        ),
        ("pkg-1.0.dist-info/WHEEL", wheel("cp311-cp311-manylinux_2_17_aarch64"), "cp311"),
        ("pkg-1.0.dist-info/WHEEL", wheel("cp313-abi3-manylinux_2_17_aarch64"), "cp313"),
        ("pkg-1.0.dist-info/WHEEL", wheel("py3-none-macosx_11_0_arm64"), "macosx"),
        ("botocore/__init__.py", "", "botocore: in the Lambda runtime"),
        ("boto3-1.0.dist-info/METADATA", "", "boto3: in the Lambda runtime"),
        ("pyarrow/__init__.py", "", "pyarrow: local lake only"),
        ("duckdb.py", "", "duckdb: local lake only"),
        ("websockets/__init__.py", "", "websockets: the simulator"),
    ],
)
def test_a_bad_file_fails_the_layer(tmp_path, capsys, name, content, reason):
    root = make_layer(tmp_path, {**GOOD, name: content})
    found = problems(root)
    assert len(found) >= 1
    assert any(reason in p for p in found), found
    assert check_layer.main([str(root)]) == 1
    assert reason in capsys.readouterr().err


def test_symbol_versions_are_read_from_the_bytes():
    versions = ["GLIBC_2.17", "GLIBC_2.34", "GLIBC_2.2.5"]
    assert check_layer.needed_versions(elf_needing(*versions)) == [v.encode() for v in versions]
    assert check_layer.needed_versions(elf(EM_AARCH64)) == []  # no sections: needs nothing
    assert check_layer.glibc_problem(elf_needing("GLIBC_2.34")) is None
    assert "2.35" in check_layer.glibc_problem(elf_needing("GLIBC_2.35"))


def test_a_packaged_layer_zip_is_checked_as_it_ships(tmp_path, capsys):
    """`make package` checks the zips osls wrote: what ships, not the directory it came from."""
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as archive:
        for name, content in GOOD.items():
            archive.writestr(f"python/{name}", content)
    assert check_layer.main([str(good)]) == 0
    assert f"{len(GOOD)} files" in capsys.readouterr().out
    bad = tmp_path / "core.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("python/tradelake/_hotpath.abi3.so", elf(EM_X86_64))
    assert check_layer.main([str(bad)]) == 1
    err = capsys.readouterr().err
    assert "core.zip" in err
    assert "tradelake/_hotpath.abi3.so: ELF e_machine 62 (x86_64)" in err


def test_a_missing_layer_fails(tmp_path):
    assert check_layer.main([str(tmp_path / "python")]) == 1


def test_an_oversized_layer_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(check_layer, "MAX_BYTES", 10)
    root = make_layer(tmp_path, {"big/__init__.py": "x" * 11})
    assert any("over the" in p for p in problems(root))


def test_wheel_tags():
    ok = [
        "py3-none-any",
        "py2.py3-none-any",
        "cp312-cp312-manylinux2014_aarch64",
        "cp312-cp312-manylinux_2_28_aarch64",
        "cp38-abi3-manylinux_2_17_aarch64.manylinux2014_aarch64",
        "cp312-cp312-manylinux_2_34_aarch64",
    ]
    assert [check_layer.wheel_tag_problem(t) for t in ok] == [None] * len(ok)
    bad = [
        "cp312-cp312-win_arm64",
        "cp312-cp312-musllinux_1_2_aarch64",  # musl: Lambda is glibc
        "cp312-cp312-linux_aarch64",  # a local build, not portable
        "cp312-cp312-manylinux_2_39_aarch64",  # newer glibc than the runtime's
        "py2-none-any",
        "cp312-cp312-manylinux2014_x86_64",
        "cp312-cp311-manylinux2014_aarch64",
        "pp310-pypy310_pp73-manylinux2014_aarch64",
        "garbage",
    ]
    assert all(check_layer.wheel_tag_problem(t) for t in bad)
