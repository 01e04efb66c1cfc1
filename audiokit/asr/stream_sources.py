"""Audio sources for streaming recognition, and block resampling.

A source's producer thread (the sounddevice callback thread for :class:`MicSource`, a pacing
thread for :class:`FileSource`) puts float32 mono blocks at the source's own rate into a queue;
:class:`audiokit.asr.stream_session.StreamSession` reads that queue, so a file and the microphone
go through the same code from the first block on. :class:`BlockResampler` brings blocks to the
model's rate with a stateful soxr stream (``soxr.ResampleStream``, the "HQ" quality of
:func:`audiokit.audio.resample`): resampling each block on its own would treat every block edge
as a signal end (edge transients) and round each block's length (drift).
"""

from __future__ import annotations

import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from audiokit.errors import ConfigError

BLOCK_S = 0.1  # seconds of audio per block a source delivers
_END = None  # queue sentinel: the source has no more audio


class AudioSource(ABC):
    """A producer thread puts float32 mono blocks ``(S,)`` at ``rate`` into ``self.blocks``.

    :meth:`stop` ends production; :meth:`read` still yields what was already captured, so
    audio before a Ctrl-C is decoded too.
    """

    rate: int

    def __init__(self, max_blocks: int = 0) -> None:
        self.blocks: queue.Queue[np.ndarray | None] = queue.Queue(max_blocks)
        self.stopped = threading.Event()

    @abstractmethod
    def start(self) -> None:
        """Begin producing blocks (from another thread)."""

    def stop(self) -> None:
        self.stopped.set()

    def read(self) -> Iterator[np.ndarray]:
        """Blocks until the source ends, or is stopped and drained."""
        while True:
            try:
                block = self.blocks.get(timeout=0.05)
            except queue.Empty:
                if self.stopped.is_set():
                    return
                continue
            if block is _END:
                return
            yield block


class FileSource(AudioSource):
    """A file read at its own rate (mixed to mono), delivered in BLOCK_S blocks by a thread;
    with `realtime` each block is released when its audio would have been spoken. At most
    `max_blocks` wait in the queue, so a stop takes effect within them."""

    def __init__(
        self,
        path: str | Path,
        realtime: bool = False,
        block_s: float = BLOCK_S,
        max_blocks: int = 8,
    ) -> None:
        super().__init__(max_blocks)
        from audiokit.audio import info, load

        self.path = Path(path)
        self.rate = int(info(self.path).sample_rate)
        self.samples, _ = load(self.path, sample_rate=self.rate, channel="mix")
        self.realtime, self.block = realtime, max(1, int(round(block_s * self.rate)))
        self._thread = threading.Thread(target=self._produce, daemon=True)

    def _put(self, item: np.ndarray | None) -> None:
        while not self.stopped.is_set():
            try:
                self.blocks.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def _produce(self) -> None:
        t0 = time.monotonic()
        for i in range(0, len(self.samples), self.block):
            if self.realtime:  # the block's last sample "arrives" at its audio time
                due = t0 + min(i + self.block, len(self.samples)) / self.rate
                self.stopped.wait(max(0.0, due - time.monotonic()))
            if self.stopped.is_set():
                return
            self._put(np.asarray(self.samples[i : i + self.block], dtype=np.float32))
        self._put(_END)

    def start(self) -> None:
        self._thread.start()


def import_sounddevice():
    try:
        import sounddevice
    except (ImportError, OSError) as e:  # OSError: the PortAudio library is missing
        raise ConfigError(
            f"microphone input needs sounddevice ({e}); run pip install 'audiokit[mic]' "
            "(and install PortAudio, e.g. apt install libportaudio2)"
        ) from None
    return sounddevice


class MicSource(AudioSource):
    """Microphone capture through sounddevice at the device's default rate (or `rate`)."""

    def __init__(
        self, device: int | None = None, rate: int | None = None, block_s: float = BLOCK_S
    ) -> None:
        super().__init__()
        sd = import_sounddevice()
        try:
            dev = sd.query_devices(device, "input")
        except Exception as e:  # sounddevice raises ValueError / PortAudioError
            raise ConfigError(
                f"input device {device}: {e}; list them with --list-devices and pass --device-index N"
            ) from None
        self.rate = int(rate or dev["default_samplerate"])
        self.stream = sd.InputStream(
            samplerate=self.rate,
            blocksize=max(1, int(round(block_s * self.rate))),
            device=device,
            channels=1,
            dtype="float32",
            callback=self._callback,
        )

    def _callback(self, indata, frames, time_info, status) -> None:
        self.blocks.put(np.array(indata[:, 0], dtype=np.float32))  # copy: the buffer is reused

    def start(self) -> None:
        self.stream.start()

    def stop(self) -> None:
        if self.stopped.is_set():
            return
        self.stream.stop()
        self.stream.close()
        self.stopped.set()


class BlockResampler:
    """Stateful resampling of consecutive blocks (soxr HQ), the identity at equal rates."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.stream = None
        if in_rate != out_rate:
            import soxr

            self.stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        if self.stream is None:
            return block
        return self.stream.resample_chunk(np.ascontiguousarray(block, np.float32), last=last)
