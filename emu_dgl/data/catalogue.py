"""Dataset catalogue, data root, download (verified, safely unpacked) and ``load_dataset``.

Data root (where ``<name>/train.txt`` etc. live), the first that is set:

1. the ``data_dir`` argument (CLI ``--data-dir``);
2. the environment variable ``EMU_DGL_DATA``;
3. ``datasets/`` of a source checkout (the folder next to ``pyproject.toml``);
4. a per-user cache folder, ``$XDG_CACHE_HOME/emu-dgl/datasets`` (``~/.cache/...``).

Caches (parsed graphs, SANS neighbourhoods) go to :func:`cache_root`: ``EMU_DGL_CACHE``
when set, else ``$XDG_CACHE_HOME/emu-dgl/processed`` (``~/.cache/...``); never into the
data root, which emu-dgl only writes to when asked to download a dataset there.

Each catalogue entry (:mod:`emu_dgl.data.entries`) names its base address (most
archives: ``https://github.com/TimDettmers/ConvE/raw/master/``) and its files below it;
``EMU_DGL_MIRROR`` replaces the base address (any URL urllib opens, ``file://``
included, or a plain local folder), under which the same relative paths are looked for.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import lzma
import os
import re
import shutil
import socket
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from emu_dgl.data.entries import CATALOGUE, CONVE, CatalogueEntry, SourceFile, git_blob_id
from emu_dgl.data.io import (
    SPLITS,
    check_split_file,
    key_from_hashes,
    splits_key,
    warn_untidy_names,
)
from emu_dgl.errors import DataError, EmuDglError

if TYPE_CHECKING:  # imported where graphs are built: torch is not needed to list the catalogue
    from emu_dgl.data.knowledge_graph import KnowledgeGraph

__all__ = [
    "CATALOGUE",
    "DEFAULT_BASE_URL",
    "CatalogueEntry",
    "archive_url",
    "canonical_dataset",
    "data_root",
    "dataset_dir",
    "download_dataset",
    "extract_splits",
    "has_splits",
    "load_dataset",
    "cache_root",
    "load_directory",
    "user_cache_dir",
]

DEFAULT_BASE_URL = CONVE
SYNTHETIC = "synthetic"
_CHUNK = 1 << 20


# ------------------------------------------------------------------ locations
def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/emu-dgl``, or ``~/.cache/emu-dgl``."""
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "emu-dgl"


def _source_checkout_datasets() -> Path | None:
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "datasets").is_dir():
        return checkout / "datasets"
    return None


def data_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds ``<name>/{train,valid,test}.txt`` (see the module doc for the order)."""
    if data_dir:
        return _folder(
            local_path(data_dir, "--data-dir (dataset.data_dir)"), "--data-dir (dataset.data_dir)"
        )
    env = os.environ.get("EMU_DGL_DATA")
    if env:
        return _folder(local_path(env, "EMU_DGL_DATA"), "EMU_DGL_DATA")
    return _source_checkout_datasets() or user_cache_dir() / "datasets"


def local_path(value: str | os.PathLike[str], origin: str) -> Path:
    """``value`` as a local folder path (``~`` expanded), or a DataError if it is a URL:
    ``http://host/x`` would otherwise become the relative folder ``./http:/host/x``."""
    text = os.fspath(value)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        raise DataError(
            f"{origin} is '{text}', an address; it names a local folder here (to download "
            "datasets from a mirror, set EMU_DGL_MIRROR to the address instead)"
        )
    return Path(text).expanduser()


def _folder(path: Path, origin: str) -> Path:
    if path.exists() and not path.is_dir():
        raise DataError(
            f"{origin} is '{path}', a file; point it at the folder that holds the datasets"
        )
    return path


def _writable(path: Path) -> bool:
    """Whether we may create files under ``path`` (its nearest existing ancestor decides).

    A folder with no write permission bits is treated as read-only even when the
    process could write anyway (as root): such a folder is meant to stay untouched.
    """
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return os.access(probe, os.W_OK) and bool(probe.stat().st_mode & 0o222)


def cache_root() -> Path:
    """The folder for every cache emu-dgl writes (parsed graphs, SANS neighbourhoods),
    each file keyed by the content it was built from: ``$EMU_DGL_CACHE`` when set, else
    ``<user cache>/processed`` (see :func:`user_cache_dir`). Never the data root, so a
    shared or read-only data folder stays exactly as it was. Created when first written."""
    env = os.environ.get("EMU_DGL_CACHE")
    if not env:
        return user_cache_dir() / "processed"
    path = local_path(env, "EMU_DGL_CACHE")
    if path.exists() and not path.is_dir():
        raise DataError(
            f"EMU_DGL_CACHE is '{path}', which is a file; point it at a folder for emu-dgl's "
            "caches (created if missing), or unset it to use the user cache"
        )
    return path


def has_splits(directory: Path) -> bool:
    """Whether ``directory`` holds the three split files (whatever they are: a FIFO or a
    broken link in their place is then reported by name when the folder is read)."""
    return all(os.path.lexists(directory / file_name) for file_name in SPLITS.values())


def _partial_splits(directory: Path) -> list[str]:
    """The split files present in ``directory`` when some, but not all, are."""
    present = [f for f in SPLITS.values() if os.path.lexists(directory / f)]
    return present if 0 < len(present) < len(SPLITS) else []


def dataset_dir(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<data root>/<name>`` (whether or not it exists)."""
    return data_root(data_dir) / name


def _entry(name: str) -> CatalogueEntry:
    entry = CATALOGUE.get(name.lower())
    if entry is None:
        raise DataError(
            f"unknown dataset '{name}'; catalogue: {', '.join(CATALOGUE)}, {SYNTHETIC} "
            "(or give a folder holding train.txt, valid.txt, test.txt)"
        )
    return entry


def archive_url(entry: CatalogueEntry, path: str | None = None) -> str:
    """Address of the entry's archive (or of its file ``path``): below ``EMU_DGL_MIRROR``
    (URL or local folder) when set, else below the entry's own base address."""
    base = os.environ.get("EMU_DGL_MIRROR") or entry.base_url
    if "://" not in base:
        base = Path(base).expanduser().absolute().as_uri()
    return base.rstrip("/") + "/" + (path if path is not None else entry.archive)


def _checks(entry: CatalogueEntry) -> str:
    """How a download of ``entry`` is checked, in words."""
    pinned = [entry.sha256] if not entry.files else [f.sha256 for f in entry.files]
    return "sha256-verified" if all(pinned) else "verified: sha256 where pinned, else git blob id"


# ------------------------------------------------------------------ download
def download_dataset(
    name: str, data_dir: str | os.PathLike[str] | None = None, *, force: bool = False
) -> Path:
    """Fetch a catalogue archive, verify its sha256, unpack the split files into ``<root>/<name>``.

    Returns the dataset folder. Does nothing when the split files are already there
    (unless ``force``). The archive itself is deleted once unpacked.
    """
    entry = _entry(name)
    root = data_root(data_dir)
    target = root / entry.name
    if has_splits(target) and not force:
        return target
    present = _partial_splits(target)
    if present and not force:
        # The user's files (perhaps edited) are never replaced by a download they did not ask for.
        missing = [f for f in SPLITS.values() if f not in present]
        raise DataError(
            f"dataset folder {target} holds {', '.join(present)} but not {', '.join(missing)}; "
            f"add the missing file, or move the folder away to download '{entry.name}' again "
            f"('emu-dgl datasets download {entry.name} --force' replaces the files there)"
        )
    if not _writable(root):
        raise DataError(
            f"cannot download '{entry.name}': data root {root} is read-only; "
            "choose a writable one with --data-dir or EMU_DGL_DATA"
        )
    # The highest folder this call creates: removed again if the download fails.
    created = next((p for p in reversed([target, *target.parents]) if not p.exists()), None)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create {target} ({exc.strerror}); choose a writable --data-dir"
        ) from None
    remove_stale_parts(target)
    size = entry.download_bytes
    print(
        f"downloading '{entry.name}' from {archive_url(entry)} into {target} "
        f"({f'{size} bytes' if size is not None else 'size not pinned'}, {_checks(entry)})",
        file=sys.stderr,
        flush=True,
    )
    try:
        if entry.files:
            _fetch_files(entry, target)
        else:
            archive = _fetch(entry, target)
            try:
                extract_splits(archive, target, source=archive_url(entry))
            finally:
                archive.unlink(missing_ok=True)
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    return target


#: Download limits: the whole transfer, and the longest stretch with less than
#: STALL_BYTES received (a mirror trickling a byte now and then never times out a read).
DOWNLOAD_DEADLINE_SECONDS = 1800.0
STALL_SECONDS = 60.0
STALL_BYTES = 16 * 1024
_READ = 64 * 1024


def remove_stale_parts(folder: Path, *, older_than: float | None = None) -> None:
    """Delete ``.part`` files of downloads that were killed (older than the deadline)."""
    import time

    limit = DOWNLOAD_DEADLINE_SECONDS if older_than is None else older_than
    for part in folder.glob(".*.part"):
        try:
            if time.time() - part.stat().st_mtime > limit:
                part.unlink()
        except OSError:
            pass


def _copy_with_deadline(
    response: object, out: object, digest: object, bar: object, url: str, limit: int
) -> None:
    """Copy ``response`` to ``out`` in short reads, enforcing the deadline and stall limits
    and the size ``limit`` (the catalogue's size of the archive)."""
    import time

    read = getattr(response, "read1", None) or response.read  # type: ignore[attr-defined]
    start = window_start = time.monotonic()
    window_bytes = total = 0
    while True:
        chunk = read(_READ)
        if not chunk:
            return
        total += len(chunk)
        if total > limit:
            raise DataError(
                f"download from {url} sent more than the {limit} bytes the archive has; the mirror "
                "does not serve the catalogue's file: set EMU_DGL_MIRROR to another mirror or a file:// folder"
            )
        digest.update(chunk)  # type: ignore[attr-defined]
        out.write(chunk)  # type: ignore[attr-defined]
        bar.update(len(chunk))  # type: ignore[attr-defined]
        now = time.monotonic()
        window_bytes += len(chunk)
        if now - start > DOWNLOAD_DEADLINE_SECONDS:
            raise DataError(
                f"download from {url} did not finish within {DOWNLOAD_DEADLINE_SECONDS:.0f} s; the mirror is too "
                "slow: try again later, or set EMU_DGL_MIRROR to another mirror or a file:// folder"
            )
        if now - window_start >= STALL_SECONDS:
            if window_bytes < STALL_BYTES:
                raise DataError(
                    f"download from {url} stalled ({window_bytes} bytes in the last {now - window_start:.0f} s); "
                    "try again later, or set EMU_DGL_MIRROR to another mirror or a file:// folder"
                )
            window_start, window_bytes = now, 0


def _open_source(url: str) -> Any:
    """The archive at ``url``: a ``file://`` address opened here as a regular file (a FIFO
    or a device there is refused at once, never waited on, before the download's stall
    and deadline guards could start), any other through urllib."""
    if not url.lower().startswith("file:"):
        return urllib.request.urlopen(url, timeout=STALL_SECONDS)
    from emu_dgl.files import lexists, open_read

    path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
    try:
        return open_read(path, "dataset archive", follow=True)
    except EmuDglError as exc:
        if not lexists(path):
            raise FileNotFoundError(errno.ENOENT, "no such file", str(path)) from None
        raise DataError(
            f"{exc}; EMU_DGL_MIRROR must name a folder holding the catalogue's archive files"
        ) from None


def _fetch(entry: CatalogueEntry, target: Path) -> Path:
    """Stream the archive to a temporary file in ``target`` while hashing it; verify."""
    return _fetch_file(
        entry,
        SourceFile("archive", entry.archive, entry.sha256, entry.size, entry.git_blob),
        target,
    )


def _fetch_files(entry: CatalogueEntry, target: Path) -> None:
    """A files entry: every split file fetched and verified first, then all three moved
    into place (a failure leaves none of them)."""
    fetched = {}
    try:
        for source in entry.files:
            fetched[source.split] = _fetch_file(entry, source, target)
        for split, tmp in fetched.items():
            os.replace(tmp, target / SPLITS[split])
    finally:
        for tmp in fetched.values():
            tmp.unlink(missing_ok=True)


def _fetch_file(entry: CatalogueEntry, source: SourceFile, target: Path) -> Path:
    """Stream one file of ``entry`` to a temporary file in ``target`` while hashing it; verify
    its sha256, or its git blob id where no sha256 is pinned."""
    from tqdm.auto import tqdm

    url = archive_url(entry, source.path)
    label = Path(source.path).name
    fd, tmp_name = tempfile.mkstemp(prefix=f".{label}.", suffix=".part", dir=target)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                # The socket timeout bounds one silent read; _copy_with_deadline bounds a trickle.
                response = _open_source(url)
                with response:
                    headers = getattr(response, "headers", None)
                    total = headers.get("Content-Length") if headers is not None else None
                    with tqdm(
                        total=int(total) if total else None,
                        unit="B",
                        unit_scale=True,
                        unit_divisor=1024,
                        desc=source.path,
                        disable=None,  # shown on a terminal only
                        leave=False,
                    ) as bar:
                        limit = source.size if source.size is not None else 1 << 32
                        _copy_with_deadline(response, out, digest, bar, url, limit)
            except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", None) or exc
                if isinstance(exc, TimeoutError | socket.timeout):
                    reason = f"no data for {STALL_SECONDS:.0f} s"
                raise DataError(
                    f"could not download {url} ({reason}); without network, put train.txt, "
                    f"valid.txt and test.txt of '{entry.name}' in {target}, or put {source.path} "
                    "in a folder and set EMU_DGL_MIRROR=file:///path/to/that/folder"
                ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    actual = digest.hexdigest()
    expected, kind = (
        (source.sha256, "sha256") if source.sha256 else (source.git_blob, "git blob id")
    )
    if not source.sha256:
        actual_blob = git_blob_id(tmp)
        print(f"{url}: git blob id {actual_blob}, sha256 {actual}", file=sys.stderr, flush=True)
        actual = actual_blob
    if actual != expected:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"checksum mismatch for {url}: expected {kind} {expected}, got {actual}; "
            "the download was deleted (try again, or check EMU_DGL_MIRROR)"
        )
    return tmp


def _unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Why unpacking ``member`` could write outside the target folder, or None if it cannot."""
    path = PurePosixPath(member.name.replace("\\", "/"))
    if path.is_absolute() or (len(member.name) > 1 and member.name[1] == ":"):
        return "absolute path"
    if ".." in path.parts:
        return "'..' in path"
    if member.ischr() or member.isblk() or member.isfifo():
        return "device or fifo"
    if member.issym() or member.islnk():
        link = PurePosixPath(member.linkname.replace("\\", "/"))
        if link.is_absolute():
            return "link to an absolute path"
        # A symlink resolves from its own folder, a hard link from the archive root.
        resolved = (path.parent / link) if member.issym() else link
        depth = 0
        for part in resolved.parts:
            depth += -1 if part == ".." else (0 if part in ("", ".") else 1)
            if depth < 0:
                return "link pointing outside the archive"
    return None


def extract_splits(archive: Path, target: Path, *, source: str | None = None) -> None:
    """Unpack ``train.txt``, ``valid.txt``, ``test.txt`` from a tar archive into ``target``.

    Every member is checked first and the whole archive is refused if any could
    escape ``target`` (absolute path, ``..``, a link pointing outside, a device).
    The split files may sit at the top level or in a folder; only those three regular
    files are written, through a staging folder and ``os.replace``.
    """
    label = source or str(archive)
    try:
        _extract_splits(archive, target, label)
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise DataError(
                f"cannot unpack into {target} ({exc.strerror}); choose a writable --data-dir"
            ) from None
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"{label}: not a readable tar archive ({reason}); download it again"
        ) from None


def _extract_splits(archive: Path, target: Path, label: str) -> None:
    tar = tarfile.open(archive, "r:*")
    with tar:
        members = tar.getmembers()
        for member in members:
            reason = _unsafe_reason(member)
            if reason is not None:
                raise DataError(
                    f"{label}: refusing to unpack unsafe member '{member.name}' ({reason})"
                )
        found: dict[str, tarfile.TarInfo] = {}
        for member in members:
            path = PurePosixPath(member.name)
            if member.isfile() and path.name in SPLITS.values():
                best = found.get(path.name)
                if best is None or len(path.parts) < len(PurePosixPath(best.name).parts):
                    found[path.name] = member
        missing = [f for f in SPLITS.values() if f not in found]
        if missing:
            raise DataError(f"{label}: archive has no {', '.join(missing)}")
        staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=target))
        try:
            for file_name, member in found.items():
                handle = tar.extractfile(member)
                assert handle is not None  # regular files always have data
                with handle, open(staging / file_name, "wb") as out:
                    shutil.copyfileobj(handle, out, _CHUNK)
            for file_name in found:
                os.replace(staging / file_name, target / file_name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


# ------------------------------------------------------------------- loading
def load_directory(
    directory: str | os.PathLike[str],
    *,
    name: str | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> KnowledgeGraph:
    """Load a folder holding ``train.txt``, ``valid.txt``, ``test.txt``.

    Each file is read once: its bytes are hashed and those same bytes parsed (in bulk, see
    :mod:`emu_dgl.data.parse`). With ``cache`` the parsed graph and its filter indexes are
    stored in ``cache_dir`` (default :func:`cache_root`) under the sha256 of the bytes that
    were parsed, and later loads map that file instead of parsing (every process shares
    its pages, see :mod:`emu_dgl.data.prepared`). A cache file is used only when its
    content matches the checksums bound to its key; anything else there (corrupt,
    foreign, a link or a FIFO) is built again. A cache folder that cannot be written
    (read-only, full) only costs one warning: the graph is then used uncached.
    """
    from emu_dgl.data.prepared import load_prepared, parse_directory, save_prepared
    from emu_dgl.data.store import StoreError

    directory = Path(directory).expanduser()
    name = name or directory.resolve().name
    paths = {split: directory / file_name for split, file_name in SPLITS.items()}
    for path in paths.values():
        check_split_file(path)
    folder = None
    if cache:
        folder = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
        key = splits_key(directory)  # streamed: a hit never holds a file's bytes
        try:
            cached = load_prepared(_cache_file(folder, key), key=key, name=name)
            warn_untidy_names(directory, cached.entity_names, cached.relation_names)
            return cached
        except (StoreError, EmuDglError, OSError):
            pass  # missing, stale, corrupt or not a regular file: parse and write it again
    # The key of what is parsed: the hash of the very bytes parsed, so a file replaced
    # between the lookup and the parse is cached under its new content, never the old.
    kg, hashes = parse_directory(paths, name=name)
    if folder is not None:
        key = key_from_hashes(hashes)
        path = _cache_file(folder, key)
        try:
            save_prepared(kg, path, key=key)
        except (OSError, EmuDglError) as exc:  # a cache is optional
            warnings.warn(f"could not write the dataset cache {path}: {exc}", stacklevel=2)
    warn_untidy_names(directory, kg.entity_names, kg.relation_names)
    return kg


def _cache_file(folder: Path, key: str) -> Path:
    return folder / f"kg-{key[:40]}.store"


def _load_saved_graph(path: Path) -> KnowledgeGraph:
    """A graph written by ``KnowledgeGraph.save`` (a run trained from Python keeps its own)."""
    from emu_dgl.data.knowledge_graph import KnowledgeGraph

    try:
        return KnowledgeGraph.load(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"{path}: not a graph saved by KnowledgeGraph.save ({type(exc).__name__}); "
            "pass a dataset folder or a saved graph"
        ) from None


def _note_shadowed(local: Path, used: Path) -> None:
    """Say so when a folder of the same name in the working directory is not the one used."""
    from emu_dgl.errors import EmuDglWarning

    if has_splits(local) and local.resolve() != used.resolve():
        warnings.warn(
            f"using '{used}' (the data root's '{local.name}'); the folder './{local.name}' here is not used: "
            f"pass './{local.name}' to train on it",
            EmuDglWarning,
            stacklevel=3,
        )


def canonical_dataset(name: str, data_dir: str | os.PathLike[str] | None = None) -> str:
    """The dataset name to store with a run: a folder path made absolute, anything else unchanged.

    Mirrors :func:`load_dataset`'s resolution: ``synthetic`` and names found in the data
    root or the catalogue stay names; a path to a folder becomes absolute.
    """
    text = os.fspath(name)
    plain = "/" not in text and os.sep not in text and text not in ("", ".", "..")
    if text.lower() == SYNTHETIC or (plain and text.lower() in CATALOGUE):
        return text
    if plain and any(has_splits(data_root(data_dir) / c) for c in (text, text.lower())):
        return text
    path = Path(text).expanduser()
    return str(path.resolve()) if path.is_dir() else text


def load_dataset(
    name_or_path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> KnowledgeGraph:
    """Load a knowledge graph by catalogue name, ``"synthetic"``, or folder path.

    Resolution: ``synthetic`` is generated; ``synthetic:entities=N,triples=M,...`` is a
    generated power-law graph (:mod:`emu_dgl.data.synthetic_large`), cached; a plain name with ``<data root>/<name>/``
    holding the split files loads from there (no network); a catalogue name is
    otherwise downloaded (``download=False`` makes that an error); anything else must
    be a folder holding ``train.txt``, ``valid.txt``, ``test.txt``, or a ``.npz`` file
    written by ``KnowledgeGraph.save`` (as a run trained on a graph from Python keeps).
    """
    text = os.fspath(name_or_path)
    if cache_dir is None and cache:
        cache_dir = cache_root()
    if not isinstance(name_or_path, os.PathLike) and text.lower() == SYNTHETIC:
        from emu_dgl.data.synthetic import generate_synthetic

        return generate_synthetic()
    if not isinstance(name_or_path, os.PathLike) and text.lower().startswith(SYNTHETIC + ":"):
        from emu_dgl.data.synthetic_large import load_power_law

        return load_power_law(text, cache_dir if cache else None)
    is_plain_name = (
        not isinstance(name_or_path, os.PathLike) and "/" not in text and os.sep not in text
    )
    if not text.strip():
        raise DataError(
            "the dataset name is empty; name a dataset (emu-dgl datasets list) or a folder of TSV files"
        )
    if is_plain_name and text not in ("", ".", ".."):
        local = Path(text)
        for candidate in dict.fromkeys((text, text.lower())):
            folder = data_root(data_dir) / candidate
            if has_splits(folder) or (
                _partial_splits(folder) and text.lower() not in CATALOGUE
            ):  # an incomplete folder of the user's: the missing file is named when loading
                _note_shadowed(local, folder)
                return load_directory(folder, name=candidate, cache=cache, cache_dir=cache_dir)
        if text.lower() in CATALOGUE:
            _note_shadowed(local, data_root(data_dir) / text.lower())
            if not download:
                raise DataError(
                    f"dataset '{text.lower()}' is not in {data_root(data_dir)}; "
                    f"run `emu-dgl datasets download {text.lower()}`"
                )
            folder = download_dataset(text.lower(), data_dir)
            return load_directory(folder, name=text.lower(), cache=cache, cache_dir=cache_dir)
    path = Path(text).expanduser()
    if path.is_dir():
        return load_directory(path, cache=cache, cache_dir=cache_dir)
    if path.is_file() and path.suffix == ".npz":
        return _load_saved_graph(path)
    if is_plain_name:
        _entry(text)  # raises the "unknown dataset" error listing the catalogue
    raise DataError(
        f"{path}: dataset folder not found (it should hold train.txt, valid.txt, test.txt)"
    )
