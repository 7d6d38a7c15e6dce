"""Simulated combustible-gas detectors (可燃气体探测器) on one serial line, in a vendor-style ASCII
protocol, writing to a pty so the gateway reads a real serial device.

Frame: ``$<addr>,<conc %LEL>,<fault 0/1>,<alarm 0/1/2>*<xor8 hex>\\r\\n``, e.g.
``$01,12.5,0,0*1F\\r\\n``; the xor covers the bytes between ``$`` and ``*``.

Fault injection (for the parser's resynchronisation): ``garbage`` (random bytes between frames),
``split`` (frames written in several pieces), ``bad_checksum`` (every n-th frame corrupted),
``silent`` (chosen addresses stop sending).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from drivers.serial_line.checksum import xor8

ASCII_PROTOCOL = {
    "kind": "ascii",
    "start": "$",
    "end": "\\r\\n",
    "separator": ",",
    "fields": ["addr", "conc", "fault", "alarm"],
    "checksum": {"type": "xor8", "separator": "*"},
}


def ascii_frame(addr: int, conc: float, fault: bool, alarm: int, *, corrupt: bool = False) -> bytes:
    body = f"{addr:02d},{conc:.1f},{int(fault)},{alarm}".encode("ascii")
    checksum = xor8(body) ^ (0x5A if corrupt else 0)
    return b"$" + body + f"*{checksum:02X}\r\n".encode("ascii")


@dataclass
class Detector:
    addr: int
    seed: int = 0
    leak: bool = False
    conc: float = 0.0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)  # noqa: S311 - simulation

    def step(self) -> tuple[float, bool, int]:
        target = 35.0 if self.leak else 0.5
        self.conc = max(0.0, self.conc + (target - self.conc) * 0.2 + self.rng.uniform(-0.2, 0.2))
        alarm = 2 if self.conc >= 25 else 1 if self.conc >= 10 else 0
        return round(self.conc, 1), False, alarm


@dataclass
class DetectorLine:
    """Writes detector frames to a file descriptor (the master side of a pty)."""

    fd: int
    detectors: list[Detector]
    garbage: bool = False
    split: bool = False
    bad_checksum_every: int = 0
    silent: set[int] = field(default_factory=set)
    sent: list[tuple[int, float, bool, int]] = field(default_factory=list)  # good frames only
    corrupted: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(7))  # noqa: S311

    def round(self) -> None:
        """One frame from every detector that is not silent."""
        for det in self.detectors:
            if det.addr in self.silent:
                continue
            conc, fault, alarm = det.step()
            corrupt = bool(self.bad_checksum_every) and self.rng.randrange(self.bad_checksum_every) == 0
            frame = ascii_frame(det.addr, conc, fault, alarm, corrupt=corrupt)
            if corrupt:
                self.corrupted += 1
            else:
                self.sent.append((det.addr, conc, fault, alarm))
            if self.garbage:
                self._write([bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 12)))])
            if self.split:
                cut = sorted(self.rng.sample(range(1, len(frame)), k=min(2, len(frame) - 1)))
                self._write([frame[: cut[0]], frame[cut[0] : cut[-1]], frame[cut[-1] :]])
            else:
                self._write([frame])

    def _write(self, pieces: Iterable[bytes]) -> None:
        for piece in pieces:
            os.write(self.fd, piece)
