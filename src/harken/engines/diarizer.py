"""Speaker diarization with Resemblyzer's GE2E speaker encoder (Apache-2.0, weights in the wheel).

Given the speech regions of a clip, it embeds sliding windows of 1.6 s (the length the
encoder was trained on), clusters the embeddings by cosine distance with average linkage (the
number of speakers found by a distance threshold unless the caller gives it), and labels each
50 ms frame of speech with the cluster whose voice the windows over it are closest to.

The resemblyzer package is only the carrier of `pretrained.pt`: importing it would import
webrtcvad, which needs `pkg_resources` (gone from setuptools 81), so the three-layer LSTM is
rebuilt here, and the mel front end is computed as resemblyzer's call to librosa computes it,
a batch of windows at a time. The filter bank is faster-whisper's port of librosa's Slaney
bank (equal to within float32 rounding): importing librosa.filters (and scipy.signal under it)
took 1.8 s of every CLI run with --diarize.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harken.diarization import DiarizeOptions, EngineDiarization, SpeakerReference
from harken.engines.base import Capability
from harken.results import SpeakerTurn, TranscriptWarning

__all__ = ["SpeakerEncoderDiarizer"]

_RATE = 16000
_WINDOW_S = 1.6  # partials_n_frames = 160 mel frames of 10 ms in resemblyzer's hparams
_HOP_S = 0.6  # 0.4 s gave the same DER on both benchmark sets (benchmarks/diarization.py) with 50 % more windows
_FRAME_S = 0.05  # the resolution of the speaker labels
_TARGET_DBFS = -30.0  # resemblyzer normalises each utterance to this level before embedding
# Two windows whose average cosine distance is above this are different voices. Measured on
# joined conversations and AMI meetings alike (benchmarks/diarization.py): 0.35-0.40 is a
# plateau on both; 0.25 splits one voice in two, 0.45 merges voices.
SAME_SPEAKER_DISTANCE = 0.35
# A "speaker" with less speech than this is joined to the nearest voice: a GE2E embedding of
# less than one window is not reliable enough to found a speaker on.
_MIN_SPEAKER_S = 2.0
_MAX_CLUSTERED = 2000  # windows clustered directly; on longer audio the rest join the nearest voice
_BATCH = 128


@dataclass(frozen=True)
class _Window:
    start: float
    end: float


class SpeakerEncoderDiarizer:
    capabilities = Capability.DIARIZE
    window_s = float("inf")  # it takes a whole clip
    batches = False

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        import torch

        weights = path / "pretrained.pt"
        self._torch = torch
        self._net = _encoder(torch)
        state = torch.load(weights, map_location="cpu", weights_only=True)["model_state"]
        self._net.load_state_dict(state, strict=False)  # the checkpoint also holds GE2E's training scalars
        self._net.eval()
        self._threads = threads
        self._lock = threading.Lock()  # one clip at a time: torch's threads are shared
        from faster_whisper.feature_extractor import FeatureExtractor

        # The mel front end resemblyzer trained with, built once: librosa's Slaney filter bank
        # (fmax 8 kHz) and its periodic Hann window.
        self._filters = FeatureExtractor.get_mel_filters(_RATE, 400, 40).astype(np.float32)
        self._window = np.hanning(401)[:-1].astype(np.float32)

    def warmup(self) -> None:
        self._embed(np.zeros(int(_WINDOW_S * _RATE), np.float32), [_Window(0.0, _WINDOW_S)])

    def close(self) -> None:
        pass

    def diarize(
        self, samples: np.ndarray, regions: list[tuple[float, float]], options: DiarizeOptions,
        references: tuple[SpeakerReference, ...] = (),
    ) -> EngineDiarization:
        duration = len(samples) / _RATE
        windows = _windows(regions, duration)
        if not windows:
            return EngineDiarization((), ())
        with self._lock:
            embeddings = self._embed(samples, windows)
            named = [(r.name, self._voice(r.samples)) for r in references]
        labels, warnings = _cluster(embeddings, options)
        turns = _turns(windows, embeddings, labels, regions, duration)
        names = _names(turns, embeddings, labels, named)
        return EngineDiarization(
            tuple(SpeakerTurn(t.start, t.end, names[t.speaker]) for t in turns), tuple(warnings)
        )

    def _voice(self, samples: np.ndarray) -> np.ndarray:
        """One embedding for a reference clip: the mean of its windows, normalised."""
        duration = len(samples) / _RATE
        count = max(1, int((duration - _WINDOW_S) / _HOP_S) + 1)
        starts = np.linspace(0.0, max(0.0, duration - _WINDOW_S), count)
        mean = self._embed(samples, [_Window(s, s + _WINDOW_S) for s in starts]).mean(0)
        return mean / np.linalg.norm(mean)

    def _embed(self, samples: np.ndarray, windows: list[_Window]) -> np.ndarray:
        torch = self._torch
        if self._threads:
            torch.set_num_threads(self._threads)
        size = int(_WINDOW_S * _RATE)
        target = 10 ** (_TARGET_DBFS / 20)
        out = []
        for first in range(0, len(windows), _BATCH):  # in batches: memory stays flat with length
            batch = np.zeros((len(windows[first : first + _BATCH]), size), np.float32)
            for row, w in zip(batch, windows[first : first + _BATCH]):
                piece = samples[int(w.start * _RATE) : int(w.start * _RATE) + size]
                rms = float(np.sqrt(np.mean(piece.astype(np.float64) ** 2))) if len(piece) else 0.0
                row[: len(piece)] = piece * (target / rms) if rms > 1e-6 else piece
            with torch.inference_mode():
                out.append(self._net(torch.from_numpy(self._mel(batch))).numpy())
        return np.concatenate(out)

    def _mel(self, batch: np.ndarray) -> np.ndarray:
        """librosa.feature.melspectrogram(n_fft=400, hop_length=160, n_mels=40) as resemblyzer
        calls it (centred frames, zero padding, Hann window, power 2), for a batch of windows at
        once: (batch, 160 frames, 40)."""
        padded = np.pad(batch, ((0, 0), (200, 200)))
        frames = np.lib.stride_tricks.sliding_window_view(padded, 400, axis=1)[:, ::160][:, : int(_WINDOW_S * 100)]
        power = np.abs(np.fft.rfft(frames * self._window, axis=2)) ** 2
        return (power @ self._filters.T).astype(np.float32)


def _encoder(torch):
    class Encoder(torch.nn.Module):
        """resemblyzer.VoiceEncoder's network: the last hidden state, ReLU, L2-normalised."""

        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(40, 256, 3, batch_first=True)
            self.linear = torch.nn.Linear(256, 256)

        def forward(self, mels):
            _, (hidden, _) = self.lstm(mels)
            raw = torch.relu(self.linear(hidden[-1]))
            return raw / torch.norm(raw, dim=1, keepdim=True).clamp_min(1e-9)

    return Encoder()


def _windows(regions: list[tuple[float, float]], duration: float) -> list[_Window]:
    """Windows over each region; a region shorter than one window gets one centred on it."""
    out = []
    for start, end in regions:
        if end - start <= _WINDOW_S:
            centre = (start + end) / 2
            first = max(0.0, min(duration - _WINDOW_S, centre - _WINDOW_S / 2))
            out.append(_Window(first, first + _WINDOW_S))
            continue
        count = int(np.ceil((end - start - _WINDOW_S) / _HOP_S)) + 1
        out.extend(_Window(s, s + _WINDOW_S) for s in np.linspace(start, end - _WINDOW_S, count))
    return out


def _cluster(embeddings: np.ndarray, options: DiarizeOptions) -> tuple[np.ndarray, list[TranscriptWarning]]:
    """One label per window. Long audio: a spread of _MAX_CLUSTERED windows is clustered and
    every window then goes to the nearest centroid, which keeps time and memory near linear."""
    warnings: list[TranscriptWarning] = []
    count = len(embeddings)
    wanted = options.num_speakers
    if wanted is not None and wanted > count:
        warnings.append(TranscriptWarning(
            "fewer_speakers", f"{wanted} speakers were asked for, but the speech holds too little to tell more "
            f"than {count} apart"))
        wanted = count
    if count == 1:
        return np.zeros(1, int), warnings
    picked = np.unique(np.linspace(0, count - 1, min(count, _MAX_CLUSTERED)).round().astype(int))
    sample = embeddings[picked]
    if wanted is not None:
        labels = _ahc(sample, clusters=wanted)
    else:
        labels = _merge_small(sample, _ahc(sample, threshold=SAME_SPEAKER_DISTANCE), len(picked) / count)
        found = labels.max() + 1
        low = options.min_speakers or 1
        high = min(options.max_speakers or len(sample), len(sample))
        if not low <= found <= high:
            if low > len(sample):
                warnings.append(TranscriptWarning(
                    "fewer_speakers", f"at least {low} speakers were asked for, but the speech holds too little "
                    f"to tell more than {len(sample)} apart"))
            labels = _ahc(sample, clusters=min(max(found, low), high, len(sample)))
    if len(picked) == count:
        return labels, warnings
    centroids = _centroids(sample, labels)
    return np.argmax(embeddings @ centroids.T, axis=1), warnings


def _ahc(embeddings: np.ndarray, *, threshold: float | None = None, clusters: int | None = None) -> np.ndarray:
    """Average-linkage clustering by cosine distance, cut at `threshold` or into `clusters`.

    SciPy's, not scikit-learn's (the same tree): importing sklearn.cluster took 1.2 s of every
    CLI run with --diarize, scipy.cluster.hierarchy 0.3 s.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    if clusters is not None and clusters <= 1:
        return np.zeros(len(embeddings), int)
    tree = linkage(embeddings, method="average", metric="cosine")
    if clusters is not None:
        labels = fcluster(tree, clusters, criterion="maxclust")
    else:
        labels = fcluster(tree, threshold, criterion="distance")
    return np.unique(labels, return_inverse=True)[1]


def _merge_small(embeddings: np.ndarray, labels: np.ndarray, share: float) -> np.ndarray:
    """Clusters holding less than _MIN_SPEAKER_S of speech join the nearest large one."""
    seconds = np.bincount(labels) * _HOP_S / share
    large = np.flatnonzero(seconds >= _MIN_SPEAKER_S)
    if len(large) == 0:
        return np.zeros(len(labels), int)
    centroids = _centroids(embeddings, labels)
    out = labels.copy()
    for small in np.flatnonzero(seconds < _MIN_SPEAKER_S):
        out[labels == small] = large[np.argmax(centroids[large] @ centroids[small])]
    return np.unique(out, return_inverse=True)[1]


def _centroids(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    means = np.stack([embeddings[labels == k].mean(0) for k in range(labels.max() + 1)])
    return means / np.linalg.norm(means, axis=1, keepdims=True)


def _turns(
    windows: list[_Window], embeddings: np.ndarray, labels: np.ndarray, regions: list[tuple[float, float]],
    duration: float,
) -> list[SpeakerTurn]:
    """Each speech frame goes to the voice that the windows over it resemble most; a run of
    frames with one voice is a turn. Speakers are numbered here as their clusters are."""
    frames = int(np.ceil(duration / _FRAME_S)) + 1
    similarity = embeddings @ _centroids(embeddings, labels).T
    score = np.zeros((frames, similarity.shape[1]))
    for w, sim in zip(windows, similarity):
        score[int(w.start / _FRAME_S) : int(np.ceil(w.end / _FRAME_S))] += sim
    voice = np.argmax(score, axis=1)
    speech = np.zeros(frames, bool)
    for start, end in regions:
        speech[int(start / _FRAME_S) : int(np.ceil(end / _FRAME_S))] = True
    turns: list[SpeakerTurn] = []
    for i in np.flatnonzero(speech).tolist():
        t = round(i * _FRAME_S, 3)
        if turns and turns[-1].speaker == str(voice[i]) and abs(turns[-1].end - t) < 1e-6:  # the turn goes on
            turns[-1] = SpeakerTurn(turns[-1].start, round(min(duration, t + _FRAME_S), 3), turns[-1].speaker)
        else:
            turns.append(SpeakerTurn(t, round(min(duration, t + _FRAME_S), 3), str(voice[i])))
    return [t for t in turns if t.end > t.start]


def _names(
    turns: list[SpeakerTurn], embeddings: np.ndarray, labels: np.ndarray, named: list[tuple[str, np.ndarray]],
) -> dict[str, str]:
    """Cluster number -> label: a reference's name where its voice matches the cluster's (one
    to one, nearest first, within SAME_SPEAKER_DISTANCE), else A, B, ... in order of first turn."""
    order = list(dict.fromkeys(t.speaker for t in turns))
    out: dict[str, str] = {}
    if named:
        centroids = _centroids(embeddings, labels)
        pairs = sorted(
            (1.0 - float(centroids[int(k)] @ voice), k, name) for k in order for name, voice in named
        )
        for distance, k, name in pairs:
            if distance <= SAME_SPEAKER_DISTANCE and k not in out and name not in out.values():
                out[k] = name
    letters = iter(_letters(set(out.values())))
    for k in order:
        if k not in out:
            out[k] = next(letters)
    return out


def _letters(taken: set[str]):
    """A, B, ..., Z, AA, AB, ... skipping any a reference already uses as its name."""
    n = 0
    while True:
        label, m = "", n
        while True:
            label = chr(ord("A") + m % 26) + label
            m = m // 26 - 1
            if m < 0:
                break
        n += 1
        if label not in taken:
            yield label

