"""The blockfs on-disk format: version 2.1.0 (written), 2.0.0 and 1.0.0 (read).

A volume is one **directory file** (``vol.blockfs``) plus a few **block files**
(``vol.blockfs.0``, ``vol.blockfs.1``...) beside it. All integers are
little-endian. Block *positions* number the blocks in C order over
(z block, y block, x block), x fastest (see :mod:`.grid`). CRC-32C is the
Castagnoli CRC (as in iSCSI, ext4, Btrfs).

Block file
    Frames of the volume's codec (Blosc1), one per block, appended one after
    another; no header. Exactly one writer appends to a block file, so
    writers never lock.

Directory file, version 2.1.0::

    offset  size    field
    0       8       magic b"BlockFS\\0"
    8       4       u32 M, length of the JSON metadata (a multiple of 8)
    12      4       u32 D, offset of the index
    16      M       JSON metadata, UTF-8, padded with spaces
    16+M    4       u32 CRC-32C of bytes 0 .. 16+M (header and metadata)
    20+M    4 * P   page table: u32 CRC-32C of each index page, P = ceil(N / E)
    20+M+4P         zero bytes up to D (the next multiple of 8)
    D       20 * N  index: one entry per block position, N = number of blocks
    D+20N           end of file (a shorter file is truncated)

    index entry (20 bytes): u64 offset, u32 size, u32 file, u32 crc32c
        file    0 = block never written (reads as zeros), else 1 + i where
                i indexes BlockFiles
        offset  byte offset of the block's frame in that block file
        size    byte length of the frame
        crc32c  CRC-32C of the frame's bytes

    index page p: entries p*E .. min((p+1)*E, N), bytes D + 20pE onwards;
        a reader that fetched one page checks it against table entry p alone

    JSON keys: Version "2.1.0"; XExtent, YExtent, ZExtent; XBlockSize,
    YBlockSize, ZBlockSize; DType (numpy name; data are little-endian);
    Codec (the codec's id and parameters, see below); BlockFiles (paths
    relative to the directory file's folder, usually bare names);
    IndexPageEntries (E, 4096 when written); Metadata (the application's
    own dict).

    Codec records (each block file frame is one frame of the codec):
        {"id": "blosc", "cname": "zstd" | "lz4" | "lz4hc" | "blosclz" |
            "zlib" | "snappy", "clevel": 0-9, "shuffle": 0 none | 1 byte |
            2 bit}: a Blosc1 frame
        {"id": "fpzip"}: an fpzip frame (lossless, precision 0) of the
            C-ordered (z, y, x) block: header (nx, ny, nz, nf) = (x, y, z, 1)
        {"id": "pcodec", "level": 0-12}: a pcodec standalone frame of the
            flattened block (what numcodecs' and zarr's pcodec read)
        {"id": "kempressed", "loss": {"max_abs_error_eps": 1}}: an fpzip
            frame of (block + 2.0) as C order (z, 1, y, x), for data in
            [0, 1]; CloudVolume's kempressed chunk (x, y, 1, z)
        fpzip, pcodec and kempressed store float32 and float64 only.
        Any record may add "bitround_keepbits": N (float data were rounded
        to N mantissa bits before the codec; frames are the codec's own).
        "loss" is the bound of a lossy record and required in it (absent
        when lossless): "max_abs_error_eps" (absolute, in machine epsilons
        of the dtype) and "max_rel_error" (2**-(N+1) for BitRound: of
        max(|value|, the dtype's smallest normal)); both add. A reader
        checks "loss" against the parameters.

    A reader checks the header CRC before it trusts a key, and names an
    unknown Version or codec id. An index of up to 64 MiB is read and every
    page checked at open; a larger one is memory-mapped and each page is
    checked the first time it is used, so opening costs the same whatever
    the volume's size. blockfs-verify recomputes every CRC.

    The directory is written to a temporary file, fsynced and renamed over
    the old one, so a reader sees the old or the new directory, never half.

Directory file, version 2.0.0 (read; a writing session publishes 2.1.0)::

    as 2.1.0, but D = 16 + M (no header CRC, no page table) and the keys
    Compression (Blosc compressor name), CompressionLvl (0-9), Shuffle (bool)
    instead of Codec, and IndexCRC32C (CRC-32C of the whole index: checked
    at open, or for a memory-mapped index in one streaming pass when it is
    first used) instead of IndexPageEntries. Header and metadata unchecked.

Fragment file (``vol.blockfs.<k>.fragment``, one per batch) and journal
``vol.blockfs.<k>.journal`` (written only by the live writer of block file k;
merged in order of k; a ``vol.blockfs.journal`` left by versions before 2.1 is
still replayed). While a writing session is open, the session file
``vol.blockfs.session`` (JSON: host, machine, pid, process_start, since,
token) names it. Both files have this layout::

    0       8       magic b"BFSFRAG\\0"
    8       4       u32 J, length of the JSON volume spec (a multiple of 8)
    12      4       u32 H, offset of the first entry (24 + J)
    16      J       JSON spec: the directory's keys but BlockFiles and
                            IndexPageEntries, plus an optional "Batch" (what
                            the batch covers)
    16+J    4       u32 CRC-32C of bytes 0 .. 16+J
    20+J    4       zero
    H       32 * E  entries, in commit order
    (version 2.0.0 fragments: H = 16 + J, no CRC, 2.0.0 codec keys)

    entry (32 bytes): u64 position, u64 offset, u32 size, u32 file,
                      u32 crc32c of the frame, u32 crc32c of the entry's first 28 bytes
        file    the block file's number k: its name is ``<directory name>.<k>``

    An entry is appended only after its frame's bytes are in the block file.
    Merging fragments into the directory: for the same position, the newest
    entry wins (later in a fragment, or in a later fragment). A journal may
    end in a torn entry (a writer killed mid-append); it is dropped.

Commit file ``vol.blockfs.commit-<id>`` (versions, part of 2.1.0): a
directory file of version 2.1.0, beside the volume, its blocks never
changed once published, whose JSON also holds the key Commit: {"Id", "Parents" (ids,
first parent first), "Message", "Author", "Time" (ISO 8601, UTC),
"Changed" (blocks that differ from the first parent), "Extra" (the
committer's own dict), "Tree" (hex SHA-256 of the index's u32 sizes then
u32 crc32cs, all N, position order)}. <id> is 40 hex digits: the start of
the SHA-256 of b"blockfs-commit-1\\n" and the JSON {"message", "parents",
"spec", "tree"} (keys sorted; spec as in a fragment). Author, time,
offsets and block file names are not hashed: the one change a commit
file ever sees is a copying compaction republishing it (atomically, same
id, sizes and CRCs) pointing at block files ``vol.blockfs.compact-<k>`` that
hold its live frames; ``vol.blockfs.compaction`` (JSON {"Retire": {block
file name: Unix time retired}}) lists the files it replaced, removed by a
compaction once no entry points into them and the grace period is over.

Ref (branch ``vol.blockfs.refs/heads/<name>/``, tag ``.../tags/<name>/``): a
folder of generation files named by 12 decimal digits; the newest
generation is the ref's value, JSON {"commit": "<id>"} or {"deleted":
true}. A ref moves from generation g by writing the new value to a
temporary file, fsyncing it and link()-ing it to generation g + 1, which
fails if another process moved the ref first (compare-and-swap). Names:
letters, digits, '.', '_', '-', starting with a letter or digit.
``vol.blockfs.HEAD`` (JSON {"branch": name or null, "base": id or null,
"working": [inode, size, mtime ns] or null}) names the branch checked out
in the working directory file, the commit it was last in step with, and
the working file that then was. ``vol.blockfs@<ref>`` (a tag, a branch or a
unique id prefix of at least 4 digits) opens a commit file read-only.

Directory file, version 1.0.0 (the original blockfs; read as-is, no checksums)::

    0 magic b"BlockFS\\0"; 8 u32 M; 12 u32 D; 16 JSON (keys XBlockSize...,
    NOffsetBits, NSizeBits, XStride, YStride, ZStride, BlockFilenames,
    Compression, CompressionLvl, Version "1.0.0", plus application keys);
    at D: entries of (NOffsetBits + NSizeBits + 7) // 8 bytes, entry i at
    D + i * size, i = x//XB * XStride + y//YB * YStride + z//ZB * ZStride,
    value = offset + size << NOffsetBits; block file = BlockFilenames[i % len];
    size 0, or an entry past the end of the file, is a block never written.
    Strides must give every block its own entry (a zero or negative stride
    of an axis with more than one block is an error). Block file names are
    absolute paths; when one no longer exists, the file of the same name
    beside the directory file is used. Only decoding can check a 1.0.0
    block: blockfs-upgrade rewrites the directory as 2.1.0 with checksums.
"""


from __future__ import annotations

from .codec import SUPPORTED_DTYPES, BlockCodec, check_dtype, checksum, codec_from_dict
from .directory_file import (
    encode_directory_header,
    header_with_table,
    read_directory,
    read_spec,
    rewrite_metadata,
)
from .fragment import (
    Fragment,
    encode_entry,
    encode_fragment_header,
    newest_entries,
    read_fragment,
    read_fragment_header,
)
from .grid import BlockGrid
from .paged_index import PagedIndex, check_entries, index_errors, page_checksums
from .spec import (
    ENTRY_DTYPE,
    FRAGMENT_MAGIC,
    INDEX_DTYPE,
    KNOWN_VERSIONS,
    MAGIC,
    MMAP_THRESHOLD,
    PAGE_ENTRIES,
    VERSION,
    VERSION_1,
    VERSION_2_0,
    DirectoryContents,
    VolumeSpec,
    check_names,
    has_block_checksums,
    is_appendable,
    max_frame_size,
    parse_json,
    read_exactly,
    read_header,
)

# The format's public face: the modules above implement it, this one specifies it
# (its docstring is the spec, mirrored in docs/format.md) and names what callers use.
__all__ = [
    "ENTRY_DTYPE",
    "FRAGMENT_MAGIC",
    "INDEX_DTYPE",
    "KNOWN_VERSIONS",
    "MAGIC",
    "MMAP_THRESHOLD",
    "PAGE_ENTRIES",
    "SUPPORTED_DTYPES",
    "VERSION",
    "VERSION_1",
    "VERSION_2_0",
    "BlockCodec",
    "BlockGrid",
    "DirectoryContents",
    "Fragment",
    "PagedIndex",
    "VolumeSpec",
    "check_dtype",
    "check_entries",
    "check_names",
    "checksum",
    "codec_from_dict",
    "encode_directory_header",
    "encode_entry",
    "encode_fragment_header",
    "has_block_checksums",
    "header_with_table",
    "index_errors",
    "is_appendable",
    "max_frame_size",
    "newest_entries",
    "page_checksums",
    "parse_json",
    "read_directory",
    "read_exactly",
    "read_fragment",
    "read_fragment_header",
    "read_header",
    "read_spec",
    "rewrite_metadata",
]
