"""Reference reader (and writer) for mmp streams, written from formats/stream.md.

Needs numpy, msgpack (>= 1.0) and zstandard (>= 0.18). Usage (also importable
as the single module formats/python/mmp_stream.py):

    from mmpipe import stream as mmp_stream
    with mmp_stream.Reader("train.mmp") as r:      # or a binary file object, "-" = stdin
        print(r.header["schema"], r.header["classes"])
        for rec in r:                             # dicts: id, label, text, tensors
            x = rec["tensors"]["embedding"]       # numpy array, shape from the record
    header, records = mmp_stream.load("train.mmp")

    mmp_stream.write("out.mmp", header, records, level=3)

Every check of the spec is made: a stream that ends anywhere except right
after a trailer (and the end of its zstd frame) raises StreamError, as do
record count or checksum mismatches, records that do not match the schema,
and concatenated segments whose schemas disagree. bf16 tensors are returned
as float32 arrays (exact) unless Reader(..., bf16="raw") (uint16 bit patterns).
"""

import sys
import zlib

import msgpack
import numpy as np
import zstandard

FORMAT_VERSION = 1
MAX_TENSOR_BYTES = 1 << 30
MAX_DIMS = 8
MAX_FIELDS = 16
MAX_STRLISTS = 8
DTYPES = {
    "u8": np.dtype("u1"),
    "i32": np.dtype("<i4"),
    "i64": np.dtype("<i8"),
    "f16": np.dtype("<f2"),
    "bf16": np.dtype("<u2"),
    "f32": np.dtype("<f4"),
}
_READ_SIZE = 1 << 20


class StreamError(Exception):
    """Invalid, corrupt or truncated stream. str() is 'NAME: record N: what'."""


def _bf16_to_f32(a):
    return (a.astype(np.uint32) << 16).view(np.float32)


def _f32_to_bf16(a):
    """float32 -> bf16 bit patterns, round to nearest even (NaN stays NaN)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(a)
    if nan.any():
        r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return r


def _check_name(name, what):
    if not isinstance(name, str) or not name or len(name.encode()) >= 64 or "\0" in name:
        raise ValueError("%s has a bad name %r" % (what, name))


def _parse_header(obj):
    v = obj.get("mmpipe")
    if not isinstance(v, int) or isinstance(v, bool):
        raise ValueError("header: \"mmpipe\" version is not an integer")
    if v != FORMAT_VERSION:
        raise ValueError("unsupported mmp stream version %d (this reader supports %d)"
                         % (v, FORMAT_VERSION))
    schema = {}
    raw = obj.get("schema", {})
    if not isinstance(raw, dict):
        raise ValueError("header: schema is not a map")
    if len(raw) > MAX_FIELDS:
        raise ValueError("header: schema has %d fields (at most %d)" % (len(raw), MAX_FIELDS))
    for name, f in raw.items():
        _check_name(name, "header: schema field")
        if not isinstance(f, dict) or "dtype" not in f or "shape" not in f:
            raise ValueError("header: schema field '%s' lacks dtype or shape" % name)
        if f["dtype"] not in DTYPES:
            raise ValueError("header: schema field '%s': unknown dtype %r" % (name, f["dtype"]))
        shape = f["shape"]
        if (not isinstance(shape, list) or len(shape) > MAX_DIMS
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape)):
            raise ValueError("header: schema field '%s': bad shape %r" % (name, shape))
        schema[name] = {"dtype": f["dtype"], "shape": list(shape)}
    classes = obj.get("classes", [])
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ValueError("header: a class name is not a string")
    meta = obj.get("meta", {})
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(x, str)
                                             for k, x in meta.items()):
        raise ValueError("header: meta is not a map of strings")
    return {"version": v, "schema": schema, "classes": list(classes), "meta": dict(meta)}


def _compatible(a, b):
    """Same rule as mmp_header_compatible: same fields (dtype, shape), same classes."""
    for name, f in a["schema"].items():
        g = b["schema"].get(name)
        if g is None:
            return "field '%s' missing in the second schema" % name
        if f != g:
            return "field '%s' is %s%s in one and %s%s in the other" % (
                name, f["dtype"], f["shape"], g["dtype"], g["shape"])
    for name in b["schema"]:
        if name not in a["schema"]:
            return "field '%s' missing in the first schema" % name
    if a["classes"] != b["classes"]:
        return "class lists differ"
    return None


class _Closing:
    """close() on leaving a with block; close() closes the file when this
    object opened it (_own)."""

    def close(self):
        if self._own:
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Reader(_Closing):
    """Iterates over the records of an mmp stream (one or several concatenated)."""

    def __init__(self, src, name=None, bf16="float32"):
        if isinstance(src, (bytes, bytearray, memoryview)):
            import io
            self._f, self._own = io.BytesIO(bytes(src)), True
            self.name = name or "memory"
        elif isinstance(src, str):
            if src == "-":
                self._f, self._own, self.name = sys.stdin.buffer, False, name or "stdin"
            else:
                self._f, self._own, self.name = open(src, "rb"), True, name or src
        else:
            self._f, self._own = src, False
            self.name = name or getattr(src, "name", "stream")
        self._bf16 = bf16
        self._dctx = zstandard.ZstdDecompressor()
        self._dobj = None            # decompressobj of the current frame
        self._frame_open = False
        self._in_total = 0           # compressed bytes consumed
        self._eof = False
        self._unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, unicode_errors="surrogateescape",
                                          max_buffer_size=(1 << 31) - 1)
        self._pending = bytearray()  # decompressed bytes not yet consumed
        self._base = 0               # unpacker offset of _pending[0]
        self._off = 0                # _pending[_off:] not consumed yet
        self._state = "start"
        self.count = 0               # records returned
        self.skipped = 0             # sum of the trailers' "skipped"
        self._seg_count = 0
        self._crc = 0
        self.header = None
        self._read_header()

    # -- plumbing --------------------------------------------------------
    def _fail(self, msg):
        where = "header" if self._state == "start" else "record %d" % self.count
        self._state = "error"
        raise StreamError("%s: %s: %s" % (self.name, where, msg))

    def _feed_compressed(self):
        """Decompresses one more chunk of input. False at end of input."""
        data = self._f.read(_READ_SIZE)
        if not data:
            self._eof = True
            return False
        while data:
            if self._dobj is None:
                self._frame_start = self._in_total
                self._dobj = self._dctx.decompressobj()
                self._frame_open = True
            try:
                out = self._dobj.decompress(data)
            except zstandard.ZstdError as e:
                if self._in_total == self._frame_start and data[:4] != b"\x28\xb5\x2f\xfd":
                    if self._in_total == 0:
                        self._fail("not an mmp stream (bad zstd magic)")
                    self._fail("bad zstd magic at byte %d (garbage after the end of a stream)"
                               % self._in_total)
                self._fail("corrupt stream near byte %d: zstd: %s" % (self._in_total, e))
            if out:
                self._pending += out
                self._unpacker.feed(out)
            if self._dobj.eof:
                rest = self._dobj.unused_data
                self._in_total += len(data) - len(rest)
                self._dobj = None
                self._frame_open = False
                data = rest
            else:
                self._in_total += len(data)
                data = b""
        return True

    def _next_object(self):
        """Returns (obj, raw_bytes) or None at a clean end of input."""
        while True:
            try:
                obj = self._unpacker.unpack()
            except msgpack.OutOfData:
                if not self._feed_compressed():
                    if len(self._pending) > self._off or self._frame_open:
                        self._truncated()
                    return None
                continue
            except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError,
                    TypeError) as e:
                if self._state == "start":
                    self._fail("not an mmp stream (invalid msgpack: %s)" % e)
                self._fail("corrupt stream: invalid msgpack (%s)" % e)
            end = self._unpacker.tell()
            start = self._off
            self._off = end - self._base
            raw = bytes(self._pending[start:self._off])
            if self._off > (1 << 20) and self._off * 2 > len(self._pending):
                del self._pending[:self._off]  # compact now and then, not per object
                self._base = end
                self._off = 0
            return obj, raw

    def _truncated(self):
        if self._state == "start":
            if self._in_total == 0 and len(self._pending) == self._off and not self._frame_open:
                self._fail("empty input (not an mmp stream)")
            self._fail("truncated stream (incomplete header)")
        if self._state == "after_trailer":
            self._fail("truncated stream (incomplete data after the trailer)")
        self._fail("truncated stream (no trailer) after %d records" % self.count)

    @staticmethod
    def _kind(obj):
        if not isinstance(obj, dict):
            return None
        if "mmpipe" in obj:
            return "header"
        if "end" in obj:
            return "trailer"
        return "record"

    def _read_header(self):
        got = self._next_object()
        if got is None:
            if self._state == "start":
                self._truncated()
            return False
        obj, _ = got
        if self._kind(obj) != "header":
            if self._state == "start":
                self._fail("not an mmp stream (the first object is not an mmpipe header)")
            self._fail("corrupt stream: a %s follows the trailer instead of a header"
                       % (self._kind(obj) or "non-map"))
        try:
            h = _parse_header(obj)
        except ValueError as e:
            self._fail(str(e) if "version" in str(e) or self._state != "start"
                       else "not an mmp stream (%s)" % e)
        if self.header is None:
            self.header = h
        else:
            why = _compatible(self.header, h)
            if why:
                self._fail("schema mismatch (stream segment after record %d): %s" % (self.count, why))
        self._state = "segment"
        self._seg_count = 0
        self._crc = 0
        return True

    def _record(self, obj):
        schema = self.header["schema"]
        rec = {"id": None, "label": -1, "text": None, "tensors": {}}
        for key in ("id", "text"):
            v = obj.get(key)
            if v is not None and not isinstance(v, str):
                raise ValueError("%s is not a string" % key)
            rec[key] = v
        if "strings" in obj:
            st = obj["strings"]
            if not isinstance(st, dict):
                raise ValueError("strings is not a map")
            if len(st) > MAX_STRLISTS:
                raise ValueError("strings has %d lists (at most %d)" % (len(st), MAX_STRLISTS))
            for name, lst in st.items():
                if not isinstance(name, str) or not 1 <= len(name.encode("utf-8", "surrogateescape")) <= 63:
                    raise ValueError("strings: a list name is not a string of 1 to 63 bytes")
                if not isinstance(lst, list) or not all(isinstance(x, str) and "\0" not in x for x in lst):
                    raise ValueError("strings: \"%s\" is not an array of strings" % name)
            rec["strings"] = st
        label = obj.get("label")
        if label is not None:
            if not isinstance(label, int) or isinstance(label, bool) or label < -1:
                raise ValueError("label is not an integer >= -1")
            if label >= 0 and self.header["classes"] and label >= len(self.header["classes"]):
                raise ValueError("label %d out of range (%d classes)"
                                 % (label, len(self.header["classes"])))
            rec["label"] = label
        tensors = obj.get("tensors", {})
        if not isinstance(tensors, dict):
            raise ValueError("tensors is not a map")
        for name, t in tensors.items():
            if name not in schema:
                raise ValueError("tensor '%s' is not in the stream schema" % name)
            if not isinstance(t, dict) or not {"dtype", "shape", "data"} <= t.keys():
                raise ValueError("tensor '%s' lacks dtype, shape or data" % name)
            dt, shape, data = t["dtype"], t["shape"], t["data"]
            if dt not in DTYPES:
                raise ValueError("tensor '%s': unknown dtype %r" % (name, dt))
            if not isinstance(data, bytes):
                raise ValueError("tensor '%s': data is not msgpack bin" % name)
            if (not isinstance(shape, list) or len(shape) > MAX_DIMS
                    or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                               for d in shape)):
                raise ValueError("tensor '%s': bad shape %r" % (name, shape))
            want = schema[name]
            if dt != want["dtype"]:
                raise ValueError("tensor '%s' has dtype %s, the schema says %s"
                                 % (name, dt, want["dtype"]))
            if len(shape) != len(want["shape"]) or any(
                    w >= 0 and d != w for d, w in zip(shape, want["shape"])):
                raise ValueError("tensor '%s' has shape %s, the schema says %s"
                                 % (name, shape, want["shape"]))
            numel = 1
            for d in shape:
                numel *= d
            nbytes = numel * DTYPES[dt].itemsize
            if nbytes > MAX_TENSOR_BYTES:
                raise ValueError("tensor '%s' is too large" % name)
            if nbytes != len(data):
                raise ValueError("tensor '%s' has %d data bytes, %s %s needs %d"
                                 % (name, len(data), dt, shape, nbytes))
            a = np.frombuffer(data, dtype=DTYPES[dt]).reshape(shape)
            if dt == "bf16" and self._bf16 != "raw":
                a = _bf16_to_f32(a)
            rec["tensors"][name] = a
        for name in schema:
            if name not in rec["tensors"]:
                raise ValueError("missing tensor '%s'" % name)
        return rec

    # -- public ------------------------------------------------------------
    def __iter__(self):
        return self

    def __next__(self):
        while True:
            if self._state == "error":
                raise StreamError("%s: stream already failed" % self.name)
            if self._state == "done":
                raise StopIteration
            if self._state == "after_trailer":
                if not self._read_header():
                    self._state = "done"
                    raise StopIteration
                continue
            got = self._next_object()
            if got is None:
                self._truncated()
            obj, raw = got
            kind = self._kind(obj)
            if kind == "record":
                try:
                    rec = self._record(obj)
                except ValueError as e:
                    self._fail(str(e))
                self._crc = zlib.crc32(raw, self._crc)
                self.count += 1
                self._seg_count += 1
                return rec
            if kind == "trailer":
                count, crc, skipped = obj.get("count"), obj.get("checksum"), obj.get("skipped", 0)
                if obj.get("end") is not True or not isinstance(count, int) or not isinstance(crc, int):
                    self._fail("corrupt trailer")
                if count != self._seg_count:
                    self._fail("trailer says %d records, the stream had %d (records lost or added)"
                               % (count, self._seg_count))
                if crc != self._crc:
                    self._fail("record checksum mismatch (trailer %08x, records %08x): corrupt stream"
                               % (crc, self._crc))
                self.skipped += skipped if isinstance(skipped, int) else 0
                self._state = "after_trailer"
                continue
            if kind == "header":
                self._fail("truncated stream (no trailer) after %d records: a new stream header follows"
                           % self.count)
            self._fail("corrupt stream: expected a msgpack map")


def load(src, **kw):
    """(header, [records]) of a whole stream."""
    with Reader(src, **kw) as r:
        return r.header, list(r)


class Writer(_Closing):
    """Writes one stream segment: header, records, trailer (single zstd frame
    with content checksum; flushed every flush_bytes of records)."""

    def __init__(self, dst, schema, classes=(), meta=None, level=3, flush_bytes=1 << 20):
        if isinstance(dst, str):
            self._f, self._own = (sys.stdout.buffer, False) if dst == "-" else (open(dst, "wb"), True)
        else:
            self._f, self._own = dst, False
        self.schema = {k: {"dtype": v["dtype"], "shape": list(v["shape"])} for k, v in schema.items()}
        self.classes = list(classes)
        self._co = zstandard.ZstdCompressor(level=level, write_checksum=True).compressobj()
        self._crc, self.count, self.skipped = 0, 0, 0
        self._since_flush, self._flush_bytes = 0, flush_bytes
        self._put(msgpack.packb({"mmpipe": FORMAT_VERSION, "schema": self.schema,
                                 "classes": self.classes, "meta": dict(meta or {})},
                                use_bin_type=True))

    def _put(self, b):
        self._f.write(self._co.compress(b))
        self._since_flush += len(b)
        if self._since_flush >= self._flush_bytes:
            self._f.write(self._co.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
            self._since_flush = 0

    def write(self, tensors, id=None, label=-1, text=None, strings=None):
        """strings: None or {name: [str, ...]} (formats/stream.md section 4)."""
        obj = {}
        if id is not None:
            obj["id"] = id
        if label is not None and label != -1:
            obj["label"] = int(label)
        if text is not None:
            obj["text"] = text
        if strings:
            if len(strings) > MAX_STRLISTS:
                raise ValueError("at most %d string lists" % MAX_STRLISTS)
            obj["strings"] = {str(k): [str(x) for x in v] for k, v in strings.items()}
        ts = {}
        if set(tensors) != set(self.schema):
            raise ValueError("record fields %s do not match the schema %s"
                             % (sorted(tensors), sorted(self.schema)))
        for name in self.schema:
            want = self.schema[name]
            a = np.asarray(tensors[name])
            if want["dtype"] == "bf16" and a.dtype != np.uint16:
                a = _f32_to_bf16(a.astype(np.float32))
            a = np.asarray(a, dtype=DTYPES[want["dtype"]])
            if a.ndim != len(want["shape"]) or any(w >= 0 and d != w for d, w in
                                                    zip(a.shape, want["shape"])):
                raise ValueError("field '%s' has shape %s, the schema says %s"
                                 % (name, list(a.shape), want["shape"]))
            ts[name] = {"dtype": want["dtype"], "shape": list(a.shape), "data": a.tobytes()}
        obj["tensors"] = ts
        b = msgpack.packb(obj, use_bin_type=True)
        self._crc = zlib.crc32(b, self._crc)
        self.count += 1
        self._put(b)

    def close(self):
        self._put(msgpack.packb({"end": True, "count": self.count, "checksum": self._crc,
                                 "skipped": self.skipped}, use_bin_type=True))
        self._f.write(self._co.flush())
        self._f.flush()
        super().close()


def write(dst, header, records, level=3):
    """Writes records (dicts as Reader returns them) under header (as Reader.header)."""
    with Writer(dst, header["schema"], header.get("classes", ()), header.get("meta"),
                level=level) as w:
        for r in records:
            w.write(r["tensors"], id=r.get("id"), label=r.get("label", -1), text=r.get("text"),
                    strings=r.get("strings"))


def _main(argv):
    """python3 -m mmpipe.stream FILE...: summary per stream (a tiny mmp-cat)."""
    import json
    for path in argv or ["-"]:
        try:
            with Reader(path) as r:
                print(json.dumps(r.header))
                n = sum(1 for _ in r)
                print(json.dumps({"records": n, "skipped": r.skipped}))
        except StreamError as e:
            print("mmpipe: %s" % e, file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    _main(sys.argv[1:])
