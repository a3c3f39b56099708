"""Uploads → bundle files: JSON, zip and tar.gz read safely; manifest; digest."""

from __future__ import annotations

import gzip
import io
import stat
import struct
import tarfile
import zipfile

import pytest

from compute_worker.adapters.bundles import (
    bundle_digest,
    files_from_json,
    files_from_targz,
    files_from_zip,
    read_manifest,
)
from compute_worker.domain import deployments, errors

FILES = {"workflows.py": b"print('hi')\n", "pkg/flows.py": b"x = 1\n", "workflow.toml": b""}


def make_zip(entries: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def tar_member(name: str, content: bytes = b"", kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(content) if kind == tarfile.REGTYPE else 0
    return info


def make_targz(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, content in members:
            archive.addfile(info, io.BytesIO(content) if info.isreg() else None)
    return buffer.getvalue()


def targz_of(entries: dict[str, bytes]) -> bytes:
    return make_targz([(tar_member(name, content), content) for name, content in entries.items()])


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deployments, "MAX_BUNDLE_BYTES", 1024 * 1024)
    monkeypatch.setattr(deployments, "MAX_BUNDLE_FILES", 10)


# --- JSON ---------------------------------------------------------------------------


def test_json_files_become_utf8_bytes_under_clean_paths() -> None:
    files = files_from_json({"./workflows.py": "é = 1\n", "pkg/flows.py": "x"})
    assert files == {"workflows.py": "é = 1\n".encode(), "pkg/flows.py": b"x"}


@pytest.mark.parametrize("files", [None, [], "text", {"a.py": 1}, {"a.py": None}])
def test_json_files_must_be_an_object_of_strings(files: object) -> None:
    with pytest.raises(errors.InvalidDeployment):
        files_from_json(files)


@pytest.mark.parametrize("path", ["../x.py", "a/../../x.py", "/etc/x", "a\\b.py", "C:/x.py"])
def test_json_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(errors.InvalidDeployment):
        files_from_json({path: "x"})


def test_json_paths_equal_once_normalized_are_duplicates() -> None:
    with pytest.raises(errors.InvalidDeployment, match="duplicate"):
        files_from_json({"a/b.py": "1", "a/./b.py": "2"})


def test_a_path_cannot_be_both_file_and_directory() -> None:
    with pytest.raises(errors.InvalidDeployment, match="both a file and a directory"):
        files_from_json({"a": "1", "a/b.py": "2"})


def test_json_text_that_is_not_encodable_is_refused() -> None:
    with pytest.raises(errors.InvalidDeployment, match="not valid text"):
        files_from_json({"a.py": "\ud800"})


def test_json_limits(small_limits: None) -> None:
    with pytest.raises(errors.InvalidDeployment, match="more than 10 files"):
        files_from_json({f"f{i}.py": "" for i in range(11)})
    with pytest.raises(errors.InvalidDeployment, match="exceeds"):
        files_from_json({"a.py": "x" * (1024 * 1024 + 1)})


# --- zip ----------------------------------------------------------------------------


def test_zip_round_trip_skips_directories() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pkg/", b"")
        for name, content in FILES.items():
            archive.writestr(name, content)
    assert files_from_zip(buffer.getvalue()) == FILES


@pytest.mark.parametrize("name", ["../x.py", "/etc/x", "a\\b.py", "a/../../x"])
def test_zip_unsafe_paths_are_refused(name: str) -> None:
    with pytest.raises(errors.InvalidDeployment):
        files_from_zip(make_zip({name: b"x"}))


def test_zip_directory_entry_outside_the_bundle_is_refused() -> None:
    with pytest.raises(errors.InvalidDeployment, match="escapes"):
        files_from_zip(make_zip({"../up/": b"", "a.py": b""}))


def test_zip_symlink_is_refused() -> None:
    with pytest.raises(errors.InvalidDeployment, match="links are not allowed"):
        files_from_zip(make_zip({"a.py": b""}, symlink="evil"))


def test_zip_duplicate_paths_are_refused() -> None:
    buffer = io.BytesIO()
    with (
        pytest.warns(UserWarning, match="Duplicate name"),
        zipfile.ZipFile(buffer, "w") as archive,
    ):
        archive.writestr("a.py", b"1")
        archive.writestr("a.py", b"2")
    with pytest.raises(errors.InvalidDeployment, match="duplicate path"):
        files_from_zip(buffer.getvalue())


def test_zip_too_many_files(small_limits: None) -> None:
    with pytest.raises(errors.InvalidDeployment, match="more than 10 files"):
        files_from_zip(make_zip({f"f{i}.py": b"" for i in range(11)}))


def test_zip_bomb_stops_at_the_limit(small_limits: None) -> None:
    bomb = make_zip({"bomb.bin": bytes(8 * 1024 * 1024)})
    assert len(bomb) < 16 * 1024  # a few KB that inflate far past the limit
    with pytest.raises(errors.InvalidDeployment, match="exceeds"):
        files_from_zip(bomb)


def test_zip_bomb_spread_over_entries_stops_at_the_limit(small_limits: None) -> None:
    bomb = make_zip({f"part{i}.bin": bytes(300 * 1024) for i in range(5)})
    with pytest.raises(errors.InvalidDeployment, match="exceeds"):
        files_from_zip(bomb)


def test_zip_bomb_with_forged_small_sizes_is_refused(small_limits: None) -> None:
    """Declared sizes rewritten to 1 byte: never trusted, the archive is still refused."""
    bomb = bytearray(make_zip({"bomb.bin": bytes(8 * 1024 * 1024)}))
    central = bomb.find(b"PK\x01\x02")
    struct.pack_into("<I", bomb, central + 24, 1)  # uncompressed size in the central dir
    local = bomb.find(b"PK\x03\x04")
    struct.pack_into("<I", bomb, local + 22, 1)  # and in the local header
    with pytest.raises(errors.InvalidDeployment):
        files_from_zip(bytes(bomb))


@pytest.mark.parametrize("data", [b"", b"not a zip", make_zip(FILES)[:-30]])
def test_corrupt_zip_is_refused(data: bytes) -> None:
    with pytest.raises(errors.InvalidDeployment, match="corrupt or unsupported zip"):
        files_from_zip(data)


def test_zip_with_flipped_content_fails_its_crc() -> None:
    data = bytearray(make_zip({"a.py": b"print(1)\n" * 50}))
    data[40] ^= 0xFF  # inside the compressed data of the first entry
    with pytest.raises(errors.InvalidDeployment):
        files_from_zip(bytes(data))


# --- tar.gz -------------------------------------------------------------------------


def test_targz_round_trip_skips_directories() -> None:
    members = [
        (tar_member("./", kind=tarfile.DIRTYPE), b""),
        (tar_member("pkg", kind=tarfile.DIRTYPE), b""),
    ]
    members += [(tar_member(f"./{name}", content), content) for name, content in FILES.items()]
    assert files_from_targz(make_targz(members)) == FILES


@pytest.mark.parametrize("name", ["../x.py", "/etc/x", "a\\b.py"])
def test_targz_unsafe_paths_are_refused(name: str) -> None:
    with pytest.raises(errors.InvalidDeployment):
        files_from_targz(targz_of({name: b"x"}))


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (tarfile.SYMTYPE, "links are not allowed"),
        (tarfile.LNKTYPE, "links are not allowed"),
        (tarfile.CHRTYPE, "special file"),
        (tarfile.FIFOTYPE, "special file"),
    ],
)
def test_targz_links_and_devices_are_refused(kind: bytes, message: str) -> None:
    link = tar_member("evil", kind=kind)
    link.linkname = "/etc/passwd"
    data = make_targz([(tar_member("a.py", b"1"), b"1"), (link, b"")])
    with pytest.raises(errors.InvalidDeployment, match=message):
        files_from_targz(data)


def test_targz_duplicate_paths_are_refused() -> None:
    data = make_targz([(tar_member("a.py", b"1"), b"1"), (tar_member("./a.py", b"2"), b"2")])
    with pytest.raises(errors.InvalidDeployment, match="duplicate path"):
        files_from_targz(data)


def test_targz_too_many_files(small_limits: None) -> None:
    with pytest.raises(errors.InvalidDeployment, match="more than 10 files"):
        files_from_targz(targz_of({f"f{i}.py": b"" for i in range(11)}))


def test_targz_bomb_stops_at_the_limit(small_limits: None) -> None:
    bomb = targz_of({"bomb.bin": bytes(8 * 1024 * 1024)})
    assert len(bomb) < 16 * 1024
    with pytest.raises(errors.InvalidDeployment, match="exceeds"):
        files_from_targz(bomb)


def test_targz_bomb_spread_over_entries_stops_at_the_limit(small_limits: None) -> None:
    bomb = targz_of({f"part{i}.bin": bytes(300 * 1024) for i in range(5)})
    with pytest.raises(errors.InvalidDeployment, match="exceeds"):
        files_from_targz(bomb)


def test_targz_pax_header_bomb_stops_at_the_limit(small_limits: None) -> None:
    """tarfile buffers pax records whole; the decompressed stream itself is bounded."""
    header = tarfile.TarInfo("PaxHeaders/a.py")
    header.type = tarfile.XHDTYPE
    header.size = 64 * 1024 * 1024
    raw = header.tobuf(format=tarfile.USTAR_FORMAT) + bytes(header.size)
    with pytest.raises(errors.InvalidDeployment, match="too large"):
        files_from_targz(gzip.compress(raw))


@pytest.mark.parametrize(
    "data", [b"", b"not gzip", gzip.compress(b"not a tar" * 100), targz_of(FILES)[:-20]]
)
def test_corrupt_targz_is_refused(data: bytes) -> None:
    with pytest.raises(errors.InvalidDeployment, match=r"corrupt or unsupported tar\.gz"):
        files_from_targz(data)


# --- manifest -----------------------------------------------------------------------


def test_manifest_is_optional() -> None:
    assert read_manifest({"workflows.py": b""}) == {}


def test_manifest_keys() -> None:
    toml = b'kind = "graph"\nentrypoint = "flows/main.json"\nother = 1\n[metadata]\nteam = "a"\n'
    assert read_manifest({"workflow.toml": toml}) == {
        "kind": "graph",
        "entrypoint": "flows/main.json",
        "metadata": {"team": "a"},
    }


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (b"kind = ", "not valid TOML"),
        (b"\xff\xfe", "not valid TOML"),
        (b"kind = 1", "kind must be a string"),
        (b'kind = "java"', "kind must be one of"),
        (b"entrypoint = []", "entrypoint must be a string"),
        (b'metadata = "x"', "metadata must be a table"),
    ],
)
def test_manifest_errors(toml: bytes, message: str) -> None:
    with pytest.raises(errors.InvalidDeployment, match=message):
        read_manifest({"workflow.toml": toml})


# --- digest -------------------------------------------------------------------------


def test_digest_is_stable_across_order_and_upload_format() -> None:
    reordered = dict(reversed(list(FILES.items())))
    digest = bundle_digest(FILES)
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    assert bundle_digest(reordered) == digest
    assert bundle_digest(files_from_zip(make_zip(FILES))) == digest
    assert bundle_digest(files_from_targz(targz_of(FILES))) == digest


@pytest.mark.parametrize(
    "other",
    [
        {**FILES, "workflows.py": b"print('hi!')\n"},
        {**FILES, "extra.py": b""},
        {k.replace("pkg", "pkh"): v for k, v in FILES.items()},
        {k: v for k, v in FILES.items() if k != "workflow.toml"},
    ],
)
def test_digest_changes_with_any_content_or_path(other: dict[str, bytes]) -> None:
    assert bundle_digest(other) != bundle_digest(FILES)


def test_digest_cannot_collide_by_concatenation() -> None:
    assert bundle_digest({"ab": b"c"}) != bundle_digest({"a": b"bc"})
    assert bundle_digest({"a": b"", "b": b""}) != bundle_digest({"a": b"b", "": b""})
