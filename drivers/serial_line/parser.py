"""Stream parsers for line protocols: feed bytes as they arrive, get frames out.

They resynchronise after garbage, split frames and checksum errors, and count every problem;
nothing a device sends can make them raise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.serial_line.checksum import CHECKSUMS
from drivers.serial_line.spec import MAX_FRAME, AsciiSpec, BinarySpec

Fields = dict[str, int | float | str]


@dataclass
class ParserStats:
    frames: int = 0
    garbage_bytes: int = 0
    checksum_errors: int = 0
    malformed: int = 0  # wrong number of fields, field outside the frame, oversize


@dataclass
class AsciiParser:
    spec: AsciiSpec
    stats: ParserStats = field(default_factory=ParserStats)
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[Fields]:
        self._buf += data
        out: list[Fields] = []
        end, start = self.spec.end_bytes, self.spec.start_bytes
        while True:
            if start:
                at = self._buf.find(start)
                if at < 0:
                    keep = len(start) - 1  # a start marker may be split across reads
                    self._drop(len(self._buf) - keep if len(self._buf) > keep else 0)
                    return out
                self._drop(at)
            stop = self._buf.find(end, len(start))
            if stop < 0:
                if len(self._buf) > self.spec.max_length:
                    self.stats.malformed += 1
                    self._drop(len(start) or 1)  # hunt for the next start (or line) from here
                    continue
                return out
            line = bytes(self._buf[len(start) : stop])
            restart = line.rfind(start) if start else -1
            if restart >= 0:  # a newer start marker inside: what came before it was a broken frame
                self._drop(len(start) + restart)
                continue
            if len(line) > self.spec.max_length:
                self.stats.malformed += 1
                self._drop(stop + len(end))
                continue
            del self._buf[: stop + len(end)]
            fields = self._parse(line)
            if fields is not None:
                out.append(fields)

    def _drop(self, n: int) -> None:
        if n > 0:
            self.stats.garbage_bytes += n
            del self._buf[:n]

    def _parse(self, line: bytes) -> Fields | None:
        spec = self.spec
        if spec.checksum is not None:
            sep = spec.checksum.separator.encode()
            body, found, given = line.rpartition(sep)
            func, width = CHECKSUMS[spec.checksum.type]
            try:
                ok = found and int(given.decode("ascii"), 16) == func(body) and len(given) == 2 * width
            except (ValueError, UnicodeDecodeError):
                ok = False
            if not ok:
                self.stats.checksum_errors += 1
                return None
            line = body
        try:
            parts = line.decode("ascii").split(spec.separator)
        except UnicodeDecodeError:
            self.stats.malformed += 1
            return None
        if len(parts) != len(spec.fields):
            self.stats.malformed += 1
            return None
        self.stats.frames += 1
        return {name: part.strip() for name, part in zip(spec.fields, parts, strict=True)}


@dataclass
class BinaryParser:
    spec: BinarySpec
    stats: ParserStats = field(default_factory=ParserStats)
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[Fields]:
        self._buf += data
        out: list[Fields] = []
        header = self.spec.header_bytes
        while True:
            at = self._buf.find(header)
            if at < 0:
                self._drop(max(0, len(self._buf) - (len(header) - 1)))
                return out
            self._drop(at)
            size = self._frame_size()
            if size is None:
                return out  # length field not complete yet
            if size < len(header) or size > MAX_FRAME:
                self.stats.malformed += 1
                self._drop(1)
                continue
            if len(self._buf) < size:
                return out
            frame = bytes(self._buf[:size])
            fields = self._parse(frame)
            if fields is None:
                self._drop(1)  # not a frame after all: resynchronise on the next header
                continue
            del self._buf[:size]
            out.append(fields)

    def _drop(self, n: int) -> None:
        if n > 0:
            self.stats.garbage_bytes += n
            del self._buf[:n]

    def _frame_size(self) -> int | None:
        spec = self.spec
        if spec.size is not None:
            return spec.size
        assert spec.length is not None
        lf = spec.length
        if len(self._buf) < lf.offset + lf.size:
            return None
        counted = int.from_bytes(self._buf[lf.offset : lf.offset + lf.size], lf.byte_order) + lf.adjust
        return lf.offset + lf.size + counted + spec.checksum_size

    def _parse(self, frame: bytes) -> Fields | None:
        spec = self.spec
        if spec.checksum is not None:
            func, width = CHECKSUMS[spec.checksum.type]
            given = int.from_bytes(frame[-width:], spec.checksum.byte_order)
            if func(frame[spec.checksum.start : -width]) != given:
                self.stats.checksum_errors += 1
                return None
        body_end = len(frame) - spec.checksum_size
        if any(f.offset + f.size > body_end for f in spec.fields):
            self.stats.malformed += 1
            return None
        self.stats.frames += 1
        return {f.name: f.decode(frame) for f in spec.fields}


Parser = AsciiParser | BinaryParser


def parser_for(spec: AsciiSpec | BinarySpec) -> Parser:
    return AsciiParser(spec) if isinstance(spec, AsciiSpec) else BinaryParser(spec)
