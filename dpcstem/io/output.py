"""Every output dpcstem writes goes through here: the checks, the temporary file, the rename.

DESIGN.md §4: an output is written to a hidden temporary file in its own folder and renamed
into place only when it is whole, so an interrupted run (a signal, a full disk, an error)
leaves no half-written result and no temporary file; an existing output is replaced only
with ``overwrite``, and the existence test and the rename are one atomic step (``link(2)``);
an output is never an input (same file through any path or link) nor anything but a regular
file; everything that can be known about a destination is checked before the work
(:func:`check_destination`); results get the permissions the umask gives.

What is written (the result file, a series, a table, a figure) is the business of the
format modules; they all write through :func:`atomic_output` or :func:`hdf5_output`.

Every output is forced to the disk before its rename, so a large one gains nothing from the
page cache: its bytes are written around it (:class:`DirectWrites`, ``O_DIRECT``) where the
file system allows, which spares a core the copy (on a virtual machine that hands the guest's
freed memory back to its host, filling fresh page-cache pages cost 3 s a GB of kernel time).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import stat
import threading
from pathlib import Path

import h5py
import numpy as np

from ..errors import OutputError, OutputExistsError
from ..memory import DIRECT_ALIGN, aligned_bytes

#: The signals that stop a write cleanly: the temporary file is removed, the old result kept.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

#: Suffixes of the HDF5 files dpcstem writes.
HDF5_SUFFIXES = (".h5", ".hdf5")


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) arrived while an output was being written."""

    def __init__(self, signum, written=()):
        super().__init__(signum)
        self.signum = signum
        self.written = tuple(written)  # outputs already whole when the signal came (during their rename)

    def __str__(self):
        return signal.Signals(self.signum).name



# -- destinations ----------------------------------------------------------------------------

def _kind(mode) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def input_files(inputs) -> list[Path]:
    """The files behind input arguments; ``A.tif,B.tif,C.tif,D.tif`` names four."""
    files = []
    for item in inputs:
        if item is None:
            continue
        text = os.fspath(item)
        if "," in text and not os.path.lexists(text):
            files += [Path(part) for part in text.split(",") if part]
        else:
            files.append(Path(text))
    return files


def _identity(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _check_not_an_input(path: Path, inputs):
    here = _identity(path)
    if here is None:
        return
    for source in input_files(inputs):
        if _identity(source) == here:
            same = "" if os.path.abspath(source) == os.path.abspath(path) else f" (the same file as input {source})"
            raise OutputExistsError(f"{path}: the output is an input{same}; it is never replaced, even with "
                                    "--overwrite: give another output name")


def _check_existing(path: Path, overwrite: bool):
    """Refuse a destination that is not a regular file (even with ``overwrite``), or that exists without it."""
    try:
        link = os.lstat(path)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise OutputExistsError(f"{path}: {path.parent} is not a folder") from None
    try:
        target = os.stat(path)
    except FileNotFoundError:  # a dangling symbolic link
        target = None
    if target is not None and not stat.S_ISREG(target.st_mode):
        raise OutputExistsError(f"{path}: the output is {_kind(target.st_mode)}, not a regular file; it is never "
                                "replaced, even with --overwrite: give a file name")
    if not overwrite:
        what = "a symbolic link" if stat.S_ISLNK(link.st_mode) else "output"
        raise OutputExistsError(f"{path}: {what} exists; give --overwrite to replace it")


def _name_max(folder) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _temporary_name(path: Path, suffix=".tmp") -> Path:
    """A hidden name beside ``path`` (``.NAME.XXXXXXXX.tmp``), short enough for the filesystem."""
    room = _name_max(path.parent) - len(".") - len(".xxxxxxxx.probe")
    name = os.fsencode(path.name)[:room].decode(errors="ignore")
    return path.parent / f".{name}.{secrets.token_hex(4)}{suffix}"


def _create(path: Path) -> int:
    """Create ``path`` exclusively, with the mode the umask gives (not mkstemp's 0600)."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)


def check_destination(path, *, overwrite=False, inputs=(), suffixes=None, what="output") -> Path:
    """Everything about an output that can be known before the work; raise or return ``path``.

    Parameters
    ----------
    path : path-like
        The output file.
    overwrite : bool
        An existing regular file may be replaced.
    inputs : sequence of path-like
        The run's input files: the output may be none of them (through any path or link).
    suffixes : sequence of str, optional
        Suffixes of the format written (lower case); another is refused.
    what : str
        What the output is, for messages.

    Raises
    ------
    OutputExistsError
        The output exists (without ``overwrite``), is an input, is not a regular file, its
        folder is missing or not a folder, its name is too long, or the folder is not
        writable (a temporary file is made and removed there to know).
    """
    path = Path(path)
    folder = path.parent
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        raise OutputExistsError(f"{path}: folder {folder} does not exist") from None
    except NotADirectoryError:
        raise OutputExistsError(f"{path}: {folder} is not a folder") from None
    if not stat.S_ISDIR(st.st_mode):
        raise OutputExistsError(f"{path}: {folder} is not a folder")
    limit = _name_max(folder)
    if len(os.fsencode(path.name)) > limit:
        raise OutputExistsError(f"{path.name[:40]}…: the file name is too long ({len(os.fsencode(path.name))} "
                                f"bytes; this filesystem allows {limit})")
    _check_not_an_input(path, inputs)
    _check_existing(path, True)  # what --overwrite can never replace comes first
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise OutputExistsError(f"{path}: the {what} is written as {_format_of(suffixes)}; give a name ending in "
                                f"{suffixes[0]}")
    _check_existing(path, overwrite)
    probe = _temporary_name(path, ".probe")
    with _StopSignals() as stop:  # a signal here cannot leave the probe behind
        try:
            os.close(_create(probe))
        except OSError as exc:
            raise OutputExistsError(f"{path}: cannot write in folder {folder} ({exc.strerror})") from None
        with contextlib.suppress(OSError):
            os.unlink(probe)
    stop.check()
    return path


def _format_of(suffixes):
    return "HDF5" if tuple(suffixes) == HDF5_SUFFIXES else "/".join(suffixes)


def output_folder(path) -> Path:
    """Make the folder of a command's outputs (``--out DIR``); refuse a file of that name."""
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        raise OutputExistsError(f"{path}: --out must be a folder, and this is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputExistsError(f"{path}: cannot make the output folder ({exc.strerror})") from None
    return path


# -- writing ---------------------------------------------------------------------------------

class _StopSignals:
    """While outputs are written, a stop signal is recorded, and acted on at safe points.

    The handler never raises: an exception raised wherever the signal lands (inside an h5py
    callback, a finaliser, between the creation of a temporary file and its registration)
    could be swallowed, turned into another error, or leave a file behind. The writer checks
    the record (:meth:`check`) between blocks it writes and before the rename, and then
    raises :class:`Interrupted`; nothing is committed once a signal has arrived.
    """

    def __init__(self):
        self.received = None
        self.previous = {}

    def handler(self, signum, frame):
        if self.received is None:
            self.received = signum

    def __enter__(self):
        self.outer = getattr(_STOP, "current", None)
        _STOP.current = self
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                with contextlib.suppress(OSError, ValueError):
                    self.previous[signum] = signal.signal(signum, self.handler)
        return self

    def __exit__(self, *exc):
        _STOP.current = self.outer
        for signum, previous in self.previous.items():
            signal.signal(signum, previous)
        return False

    def check(self, written=()):
        if self.received is not None:
            raise Interrupted(self.received, written)


_GROUP = threading.local()
_STOP = threading.local()


@contextlib.contextmanager
def output_group():
    """Outputs written inside are committed together at the end, or none of them is.

    A command that writes several files (a simulated series) leaves either all of them or,
    after an error or a signal, none of its new files and no temporary file.
    """
    if getattr(_GROUP, "pending", None) is not None:  # nested: the outer group commits
        yield
        return
    _GROUP.pending = []
    try:
        with _StopSignals() as stop:
            _GROUP.stop = stop
            try:
                try:
                    yield
                except BaseException as exc:
                    if stop.received is not None and not isinstance(exc, Interrupted):
                        raise Interrupted(stop.received) from None
                    raise
                stop.check()
                for pending in _GROUP.pending:
                    pending.verify()
                for pending in _GROUP.pending:
                    pending.commit()
                stop.check(written=[pending.path for pending in _GROUP.pending])
            finally:
                for pending in _GROUP.pending:
                    pending.discard()
    finally:
        _GROUP.pending = _GROUP.stop = None


class _Pending:
    """A finished temporary file and the output it becomes."""

    def __init__(self, tmp: Path, path: Path, overwrite: bool, inputs):
        self.tmp, self.path, self.overwrite, self.inputs = tmp, path, overwrite, inputs

    def verify(self):
        _check_not_an_input(self.path, self.inputs)
        try:
            _check_existing(self.path, self.overwrite)
        except OutputExistsError as exc:
            if "exists" in str(exc):
                raise OutputExistsError(f"{self.path}: output appeared while writing; not replaced") from None
            raise

    def commit(self):
        self.verify()
        if self.overwrite:
            os.replace(self.tmp, self.path)
            return
        try:  # link(2) fails if the name exists: the existence test and the rename are one step
            os.link(self.tmp, self.path, follow_symlinks=False)
        except FileExistsError:
            raise OutputExistsError(f"{self.path}: output appeared while writing; not replaced") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            os.close(_claim(self.path))  # a filesystem without hard links: claim the name, then rename
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)

    def discard(self):
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


def _claim(path):
    try:
        return _create(path)
    except FileExistsError:
        raise OutputExistsError(f"{path}: output appeared while writing; not replaced") from None


#: errno values that mean the destination's filesystem cannot take the output.
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _write_failure(path: Path, exc: BaseException):
    """An error while writing as one line, when it is the filesystem's fault (full, read-only, I/O):
    an OSError, or HDF5's RuntimeError (it names the errno) or one raised while an OSError was
    handled (HDF5 closing a file after a write met a full disk)."""
    if isinstance(exc, RuntimeError) and isinstance(exc.__context__, OSError):
        return _write_failure(path, exc.__context__) or _write_failure(path, OSError(str(exc)))
    if not isinstance(exc, (OSError, RuntimeError)):
        return None
    text = str(exc)
    full = getattr(exc, "errno", None) in _FULL or "No space left" in text or "errno = 28" in text \
        or "Disk quota" in text or "File too large" in text
    if full:
        try:
            st = os.statvfs(path.parent)
            free = f"{st.f_bavail * st.f_frsize / 2**20:.1f} MiB free"
        except OSError:
            free = "no free space"
        return OutputError(f"{path}: the disk is full ({free} in {path.parent}); nothing was written")
    if getattr(exc, "errno", None) in (errno.EROFS, errno.EIO, errno.EACCES):
        return OutputError(f"{path}: cannot write ({exc.strerror}); nothing was written")
    return None


def require_space(path, nbytes):
    """Refuse (:class:`~dpcstem.errors.OutputError`) an output of ``nbytes`` that its filesystem cannot hold."""
    path = Path(path)
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if nbytes > free:
        raise OutputError(f"{path}: the disk is full for it: it needs {nbytes / 2**20:.1f} MiB but only "
                          f"{free / 2**20:.1f} MiB is free in {path.parent}; nothing was written")


@contextlib.contextmanager
def atomic_output(path, *, overwrite=False, inputs=(), size=None):
    """Yield a temporary path in the folder of ``path``; rename it into place when the block ends.

    The destination is checked first (:func:`check_destination`: not an input of ``inputs``,
    a regular file or absent, not existing without ``overwrite``) and again at the rename,
    which is atomic: without ``overwrite`` an output that appeared meanwhile is never replaced.
    An exception, a full disk (:class:`~dpcstem.errors.OutputError`) or a stop signal
    (:class:`Interrupted`) leaves ``path`` as it was and removes the temporary file; only
    SIGKILL or a power cut can leave the hidden ``.NAME.*.tmp`` file, never mistaken for a
    result. Inside :func:`output_group`, the rename waits for the group's end. With ``size``
    (bytes), a filesystem without that much free space is refused before anything is written:
    for outputs written piecewise by a library that a full disk would crash (HDF5).
    """
    path = Path(path)
    check_destination(path, overwrite=overwrite, inputs=inputs)
    if size is not None:
        require_space(path, size)
    group = getattr(_GROUP, "pending", None)
    with contextlib.ExitStack() as stack:
        stop = stack.enter_context(_StopSignals()) if group is None else _GROUP.stop
        tmp = _temporary_name(path)
        try:
            os.close(_create(tmp))
        except OSError as exc:
            raise _write_failure(path, exc) or OutputExistsError(
                f"{path}: cannot write in folder {path.parent} ({exc.strerror})") from None
        pending = _Pending(tmp, path, overwrite, inputs)
        try:
            try:
                yield tmp
                _flush(tmp)
            except BaseException as exc:
                if stop.received is not None and not isinstance(exc, Interrupted):
                    # the signal's exception, raised inside a library's callback (h5py writing to
                    # memory), came back as that library's error
                    raise Interrupted(stop.received) from None
                failure = _write_failure(path, exc)
                if failure is None:
                    raise
                raise failure from None
            if group is not None:
                group.append(pending)
                return
            stop.check()
            pending.commit()
            stop.check(written=[path])
        finally:
            if group is None or pending not in group:
                pending.discard()


def _flush(tmp: Path):
    """Force the temporary file to the disk, so a full disk shows now, not after the rename."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def hdf5_output(path, *, overwrite=False, inputs=()):
    """Yield an :class:`h5py.File` built in memory; it becomes ``path`` atomically when the block ends.

    HDF5 never writes to the disk itself: the finished file image is written with plain
    writes, so a full disk is one clean error. (HDF5 that meets a full disk while it writes
    fails to flush its metadata, cannot close the file, and crashes the interpreter at exit
    with a segmentation fault.)
    """
    import io

    with atomic_output(path, overwrite=overwrite, inputs=inputs) as tmp:
        image = io.BytesIO()
        with h5py.File(image, "w") as f:
            yield f
        _write_bytes(tmp, image.getbuffer())


class DirectWrites:
    """Writes to an open file around the page cache (``O_DIRECT``), staged through one reused
    aligned buffer of :attr:`BLOCK` bytes.

    :meth:`write` returns False, having written nothing, where the platform or the file system
    refuses (then the caller writes those bytes its own way; later calls refuse too). A use as
    a context manager closes the descriptor.
    """

    #: Bytes staged and written at a time.
    BLOCK = 16 << 20

    def __init__(self, path):
        self.fd, self.buffer = None, None
        if hasattr(os, "O_DIRECT") and hasattr(os, "pwrite"):
            try:
                self.fd = os.open(path, os.O_WRONLY | os.O_DIRECT | getattr(os, "O_CLOEXEC", 0))
            except OSError:  # a file system without direct writes (tmpfs before Linux 6.6, some network ones)
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def write(self, data, position) -> bool:
        """Write ``data`` (bytes-like, any address) at ``position``, a multiple of DIRECT_ALIGN.

        A length that is not a multiple of DIRECT_ALIGN is padded to one with whatever the
        buffer holds: only for the end of the file's contents, which the caller then truncates.
        """
        view = memoryview(data).cast("B")
        if self.fd is None or position % DIRECT_ALIGN:
            return False
        if self.buffer is None:
            self.buffer = aligned_bytes(min(self.BLOCK, -(-len(view) // DIRECT_ALIGN) * DIRECT_ALIGN) or DIRECT_ALIGN)
        done = 0
        while done < len(view):
            n = min(len(self.buffer), len(view) - done)
            self.buffer[:n] = np.frombuffer(view[done:done + n], np.uint8)
            padded, written = -(-n // DIRECT_ALIGN) * DIRECT_ALIGN, 0
            try:
                while written < padded:
                    written += os.pwrite(self.fd, self.buffer[written:padded], position + done + written)
            except OSError as exc:
                if exc.errno != errno.EINVAL or done or written:
                    raise
                self.close()  # refused after all (an alignment this device does not take)
                return False
            done += n
        return True


def _write_bytes(path: Path, data, *, block=DirectWrites.BLOCK):
    """Write ``data`` into the (empty) file ``path``: around the page cache from 1 MiB on where the
    file system allows, else through it; a stop signal is acted on between blocks."""
    view = memoryview(data).cast("B")
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0))
    try:
        with DirectWrites(path) if len(view) >= 1 << 20 else contextlib.nullcontext() as direct:
            for start in range(0, len(view), block):
                stop = getattr(_STOP, "current", None)
                if stop is not None:
                    stop.check()
                chunk = view[start:start + block]
                if direct is not None and direct.write(chunk, start):
                    continue
                os.lseek(fd, start, os.SEEK_SET)
                while chunk:
                    chunk = chunk[os.write(fd, chunk):]
        os.ftruncate(fd, len(view))  # a direct write's last block was padded to a whole one
    finally:
        os.close(fd)


def write_figure(figure, path, *, overwrite=False, dpi=None, **savefig) -> Path:
    """Save a matplotlib figure (format from the suffix) atomically; ``savefig`` options are passed on."""
    path = Path(path)
    with atomic_output(path, overwrite=overwrite) as tmp:
        figure.savefig(tmp, format=path.suffix.lstrip(".").lower() or "png", dpi=dpi, **savefig)
    return path
