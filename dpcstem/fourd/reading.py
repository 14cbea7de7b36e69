"""Pixelated 4D-STEM, the reading: the blocks of frames the reduction asks for, in scan order,
brought into memory on other threads while the one before is reduced.

* A memory map that is its file's data (a ``.npy`` or raw file opened by
  :func:`~dpcstem.io.pixelated.open_pixelated` or ``np.load(mmap_mode="r")``) is read from the
  file itself by :class:`FileBlocks`: one thread reads the blocks' bytes into a few reused
  buffers, a second takes the file's SHA-256 as they pass, and the caller reduces each block
  from its buffer; the file is read once, for the reduction and its checksum alike. A file
  that is not in the page cache and could not stay there (over half the machine's memory) is
  read around it (``O_DIRECT``, Linux; where the cache's contents cannot be known, by its size
  alone): copying every byte through the cache costs about a core at disk speed, as much as
  the rest of the command.
* An HDF5 dataset, or another memory map, is read one block ahead on a reader thread (the
  map's pages faulted in there, and released from the process after the block is reduced).
* An array in memory is taken a view at a time.
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

from ..errors import InputDataError
from ..memory import DIRECT_ALIGN


@contextmanager
def block_source(array, kind, blocks):
    """The blocks ``(rows, cols)`` of ``array`` in order, as ``(rows, cols, frames)``; ``kind``
    is :func:`~dpcstem.fourd.engine.as_frames`' ("memory" or "hdf5")."""
    stream = FileBlocks.of(array, blocks) if kind == "memory" else None
    if stream is not None:
        with stream:
            yield stream
        return
    if kind == "memory" and not isinstance(array, np.memmap):
        # a view: no thread to start (which costs as much as reducing 32 MB)
        yield ((rows, cols, array[rows, cols]) for rows, cols in blocks)
        return
    with ThreadPoolExecutor(1) as reader:
        yield _read_ahead(reader, array, blocks)


def _read_ahead(reader, array, blocks):
    pending = reader.submit(_read_block, array, *blocks[0])
    for index, (rows, cols) in enumerate(blocks):
        block = pending.result()
        if index + 1 < len(blocks):
            pending = reader.submit(_read_block, array, *blocks[index + 1])
        yield rows, cols, block
        _release_pages(block)
        del block


def _read_block(array, rows, cols):
    """One block in memory: read from an HDF5 dataset, or a memory-mapped view with its pages touched."""
    block = array[rows, cols]
    if isinstance(block, np.memmap) and block.flags.c_contiguous and block.size:
        # ask for the whole block at once, then fault its pages in on this thread (one byte
        # read per page), so that the reducer finds them resident
        _madvise(block, _MADV_WILLNEED)
        flat = block.reshape(-1).view(np.uint8)
        int(flat[::mmap.PAGESIZE].sum())
    return block


class FileBlocks:
    """The blocks of a memory-mapped file read from the file itself, hashed on the way.

    One thread reads the blocks' bytes in order (``pread`` into ``DEPTH`` reused buffers, so the
    disk is never idle), a second takes the SHA-256 of the whole file as they pass (header
    and trailer included; hashlib releases the GIL), and the caller reduces each block from its
    buffer: the three overlap. The digest is recorded for the result writer
    (:func:`dpcstem.io.results.remember_sha256`) under the file's identity as it was before the
    reading, so a file changed meanwhile is hashed again there. See the module docstring for
    when the reading bypasses the page cache.
    """

    #: Buffers in flight: one being read, one being hashed or reduced, the others ready.
    DEPTH = 4
    #: Bytes read at a time outside the blocks (the header and what follows the frames).
    CHUNK = 16 << 20
    #: Alignment of direct reads: offsets, lengths and buffer addresses.
    ALIGN = DIRECT_ALIGN

    def __init__(self, array, blocks, spans, stat, direct):
        self.array, self.blocks, self.spans, self.stat, self.direct = array, blocks, spans, stat, direct
        self.offset = array.offset
        self.hasher = hashlib.sha256()

    @classmethod
    def of(cls, array, blocks):
        """For a read-only memory map that is its file's data from ``offset`` on, in C order, read
        in blocks that are each one span of the file; else None."""
        if not isinstance(array, np.memmap) or array.mode != "r" or not array.flags.c_contiguous or not array.size:
            return None
        if not (hasattr(os, "preadv") and hasattr(os, "pread")):
            return None  # positional reads (not on Windows): the map's own pages instead
        path, offset = getattr(array, "filename", None), getattr(array, "offset", None)
        mm = getattr(array, "_mmap", None)
        if path is None or offset is None or mm is None:
            return None
        sy, sx = array.shape[:2]
        if any(cols.stop - cols.start != sx and rows.stop - rows.start != 1 for rows, cols in blocks):
            return None  # a block of parts of several scan rows
        frame_bytes = array.nbytes // (sy * sx)
        spans = [(offset + (rows.start * sx + cols.start) * frame_bytes,
                  offset + ((rows.stop - 1) * sx + cols.stop) * frame_bytes) for rows, cols in blocks]
        from ..memory import physical_memory

        if cls.DEPTH * max(b - a for a, b in spans) > physical_memory() / 4:
            return None  # blocks too large to hold DEPTH of: the map's pages, a block at a time
        try:
            start = offset - offset % mmap.ALLOCATIONGRANULARITY
            if array.ctypes.data != np.frombuffer(mm, np.uint8).ctypes.data + (offset - start):
                return None  # a view that starts elsewhere in the file
            stat = os.stat(path)
        except (OSError, ValueError, TypeError):
            return None
        if _mapped_inode(array.ctypes.data) not in (None, stat.st_ino):
            return None  # the path names another file than the one mapped (replaced since)
        direct = (hasattr(os, "O_DIRECT") and offset % array.dtype.itemsize == 0
                  and stat.st_size > _direct_above() and (resident_fraction(array) or 0.0) < 0.5)
        return cls(array, blocks, spans, stat, direct)

    def __enter__(self):
        from ..io.results import file_version
        from ..memory import aligned_bytes

        self.fd = os.open(self.array.filename, os.O_RDONLY)
        self.direct_fd = None
        try:
            if file_version(os.fstat(self.fd)) != file_version(self.stat):
                raise InputDataError(f"{self.array.filename}: the file was replaced while it was being opened")
            if self.direct:
                try:
                    self.direct_fd = os.open(self.array.filename, os.O_RDONLY | os.O_DIRECT)
                except OSError:  # a file system without direct reads: through the page cache
                    pass
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            size = max(b - a for a, b in self.spans) + 2 * self.ALIGN
            self.buffers = [aligned_bytes(size, self.ALIGN) for _ in range(min(self.DEPTH, len(self.spans)))]
            self.reader, self.hashing = ThreadPoolExecutor(1), ThreadPoolExecutor(1)
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, *exc):
        for pool in (self.reader, self.hashing):
            pool.shutdown(wait=True, cancel_futures=True)
        self._close()

    def _close(self):
        for fd in (self.fd, self.direct_fd):
            if fd is not None:
                os.close(fd)
        self.fd = self.direct_fd = None

    def __iter__(self):
        depth = len(self.buffers)
        header = self.hashing.submit(self._hash_range, 0, self.offset)
        reads = [self.reader.submit(self._read, i) for i in range(depth)]
        dtype, frame = self.array.dtype, self.array.shape[2:]
        for index, (rows, cols) in enumerate(self.blocks):
            data = reads[index].result()
            hashed = self.hashing.submit(self.hasher.update, data)
            yield rows, cols, data.view(dtype).reshape(rows.stop - rows.start, cols.stop - cols.start, *frame)
            hashed.result()  # this buffer's bytes are in the digest: it can take a later block's
            if index + depth < len(self.blocks):
                reads.append(self.reader.submit(self._read, index + depth))
        header.result()
        self._finish()

    def _read(self, index):
        """Block ``index``'s bytes, read into its buffer (a view of the bytes read)."""
        start, stop = self.spans[index]
        buffer = self.buffers[index % len(self.buffers)]
        if self.direct_fd is not None:
            first = start - start % self.ALIGN
            try:
                self._fill(self.direct_fd, buffer[:-(-(stop - first) // self.ALIGN) * self.ALIGN], first,
                           stop - first)
                return buffer[start - first:stop - first]
            except OSError:  # direct reads refused after all: the rest through the page cache
                os.close(self.direct_fd)
                self.direct_fd = None
        return self._fill(self.fd, buffer[:stop - start], start, stop - start)

    def _fill(self, fd, view, position, needed):
        """Read into ``view`` from ``position`` until ``needed`` bytes are in (the end of the file may
        come first only after them); the bytes read."""
        done = 0
        while done < needed:
            n = os.preadv(fd, [view[done:]], position + done)
            if n == 0:
                raise InputDataError(f"{self.array.filename}: the file ended at byte {position + done}, before "
                                     f"its frames did (was it truncated while being read?)")
            done += n
        return view[:needed]

    def _hash_range(self, start, stop):
        """Read and hash bytes [start, stop) of the file (None: to its end), a chunk at a time."""
        position = start
        while stop is None or position < stop:
            data = os.pread(self.fd, self.CHUNK if stop is None else min(self.CHUNK, stop - position), position)
            if not data:
                return
            self.hasher.update(data)
            position += len(data)

    def _finish(self):
        """Hash what follows the frames and record the digest (if the file did not change meanwhile)."""
        from ..io.results import file_version, remember_sha256

        self._hash_range(self.spans[-1][1], None)
        if file_version(os.fstat(self.fd)) == file_version(self.stat):
            remember_sha256(self.stat, self.hasher.hexdigest())


def _mapped_inode(address):
    """The inode of the file mapped at ``address`` in this process (Linux ``/proc/self/maps``), or None."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                start, end = (int(x, 16) for x in fields[0].split("-"))
                if start <= address < end:
                    return int(fields[4]) or None
    except (OSError, ValueError, IndexError):
        pass
    return None


def _direct_above():
    """File size above which an uncached file is read around the page cache: half the memory."""
    from ..memory import physical_memory

    return physical_memory() / 2


def resident_fraction(array) -> float | None:
    """The share of a memory-mapped array's pages in the page cache (mincore(2), Linux), or None
    where that is not known: elsewhere, and for a file the caller neither owns nor may write,
    of which Linux (5.2 on) reports every page resident whatever the cache holds."""
    if not sys.platform.startswith("linux") or not isinstance(array, np.memmap) or array.nbytes == 0:
        return None
    try:
        owned = os.stat(array.filename).st_uid == os.geteuid() or os.geteuid() == 0
        if not (owned or os.access(array.filename, os.W_OK)):
            return None
    except (OSError, TypeError):
        return None
    page = mmap.PAGESIZE
    first = array.ctypes.data - array.ctypes.data % page
    length = array.ctypes.data + array.nbytes - first
    vec = np.zeros(-(-length // page), np.uint8)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mincore(ctypes.c_void_p(first), ctypes.c_size_t(length), vec.ctypes.data_as(ctypes.c_void_p)):
            return None
    except (OSError, AttributeError):  # pragma: no cover - no libc mincore
        return None
    return float(np.count_nonzero(vec & 1)) / vec.size


_MADV_WILLNEED = 3
_MADV_DONTNEED = 4


def _release_pages(view):
    """Drop the pages of a read-only or shared memory-mapped block from this process (Linux).

    The data stays in the file and the page cache; only this process's resident memory
    shrinks, so reducing a file far larger than memory keeps a bounded footprint.
    """
    _madvise(view, _MADV_DONTNEED)


def _madvise(view, advice):
    """madvise(2) over the whole pages of a read-only or shared memory-mapped block (Linux; else nothing)."""
    if not isinstance(view, np.memmap) or view.mode not in ("r", "r+") or not sys.platform.startswith("linux"):
        return
    if not view.flags.c_contiguous or view.nbytes == 0:
        return
    page = mmap.PAGESIZE
    start = view.ctypes.data
    first = -(-start // page) * page
    last = (start + view.nbytes) // page * page
    if last > first:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), ctypes.c_int(advice))
        except (OSError, AttributeError):  # pragma: no cover - no libc madvise: the kernel manages pages itself
            pass
