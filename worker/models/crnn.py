"""The CRNN recogniser: a conv backbone that reads a text line, a BiLSTM that reads it left to right.

Layout: four conv blocks (3x3 conv, BatchNorm, ReLU) each followed by a pool. The first two pools
halve height and width, the last two halve height only, so the width is downsampled by exactly
``CRNN.downsample`` (4): a 256 px wide line becomes 64 frames, enough for CTC to emit Khmer
clusters, which are rarely narrower than 8 px at height 32. What is left of the height
(``image_height / 16`` rows) is flattened into the channel axis rather than averaged away, because
Khmer puts vowels and subscripts above and below the base line and their position matters.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WIDTH_POOLS = 2

# Each direction runs as its own single-layer `torch.lstm` call; on CUDA, cuDNN then copies that
# direction's four weight tensors into its buffer (a few hundred KB) and says so on every call.
warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous chunk")


def _conv_block(in_channels: int, out_channels: int, pool: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(pool, pool),
    )


class CRNN(nn.Module):
    """Images ``[B, 1, H, W]`` to frame features ``[T, B, 2 * hidden_size]`` with ``T = W // 4``.

    ``widths`` (pixels, before padding) gives each line's own frame count, ``widths // 4``. The
    LSTM runs over the whole padded batch (no packing: packed sequences cost about half the CPU
    time of a step in slicing and zero-filling), one direction at a time. The backward direction
    reads each line reversed *within its own length* (an index gather), so right padding never
    reaches it; frames past a line's length come out as zeros, as with packed sequences. The
    parameters are those of one bidirectional ``nn.LSTM`` (same state-dict keys as before).
    """

    downsample: int = 2**WIDTH_POOLS

    def __init__(
        self,
        image_height: int = 32,
        channels: Sequence[int] = (32, 64, 128, 256),
        hidden_size: int = 256,
        lstm_layers: int = 2,
        dropout: float = 0.1,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        if len(channels) != 4:
            raise ValueError("channels must list the width of the four conv blocks")
        if image_height % 16:
            raise ValueError(f"image_height must be a multiple of 16, got {image_height}")
        pools = [(2, 2)] * WIDTH_POOLS + [(2, 1)] * (4 - WIDTH_POOLS)
        widths = [in_channels, *channels]
        self.conv = nn.Sequential(*(_conv_block(widths[i], widths[i + 1], pools[i]) for i in range(4)))
        # Channels-last convolutions are about a third faster on CPU (oneDNN) and suit cuDNN too.
        self.conv.to(memory_format=torch.channels_last)
        self.image_height = image_height
        self.rnn = nn.LSTM(
            channels[-1] * (image_height // 16),
            hidden_size,
            num_layers=lstm_layers,
            bidirectional=True,
            dropout=dropout if lstm_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.feature_size = 2 * hidden_size

    def output_lengths(self, widths: Tensor) -> Tensor:
        """Frames each line gets: ``width // 4``, at least one so CTC always has a frame."""
        return torch.clamp(widths // self.downsample, min=1).long()

    def forward(self, images: Tensor, widths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Return ``(features [T, B, F], lengths [B])``; ``widths`` defaults to the padded width."""
        seq = self.sequence(images)
        t, b = seq.shape[:2]
        if widths is None:
            lengths = torch.full((b,), t, dtype=torch.long)
        else:
            lengths = self.output_lengths(widths.cpu()).clamp(max=t)
        out = self.bilstm(seq, lengths.to(seq.device), ragged=bool((lengths < t).any()))
        return self.dropout(out), lengths.to(images.device)

    def sequence(self, images: Tensor) -> Tensor:
        """The conv maps as a sequence of frames ``[T, B, C * H']``, the height folded into channels."""
        if images.shape[2] != self.image_height:
            raise ValueError(f"expected height {self.image_height}, got {images.shape[2]}")
        maps = self.conv(images.contiguous(memory_format=torch.channels_last))
        b, c, h, t = maps.shape
        return maps.reshape(b, c * h, t).permute(2, 0, 1)

    def bilstm(self, seq: Tensor, lengths: Tensor, ragged: bool) -> Tensor:
        """The stacked BiLSTM over padded ``seq [T, B, F]``; zeros past each line's length.

        ``ragged=False`` (every line as long as the batch) reverses with a flip; the ragged path's
        gather gives the same numbers for full-length lines, so an exported model (which cannot
        branch on the lengths it is given) always takes it."""
        rnn, t = self.rnn, seq.shape[0]
        steps = torch.arange(t, device=seq.device)[:, None]
        valid = steps < lengths[None, :]  # [T, B]
        # reverse[t, b]: the frame that step t of line b's backward pass reads, ``length - 1 - t``;
        # in the padding it is ``t`` itself (masked afterwards), so the gather is its own inverse.
        reverse = torch.where(valid, lengths[None, :] - 1 - steps, steps)[:, :, None]
        mask = valid[:, :, None]
        x = seq
        for layer in range(rnn.num_layers):
            if layer and rnn.dropout and self.training:
                x = F.dropout(x, rnn.dropout, training=True)
            forward = self._direction(x, layer, "")
            if ragged:
                backward = self._direction(x.gather(0, reverse.expand_as(x)), layer, "_reverse")
                backward = backward.gather(0, reverse.expand_as(backward))
            else:
                backward = self._direction(x.flip(0), layer, "_reverse").flip(0)
            x = torch.cat([forward, backward], dim=2)
            if ragged:
                x = x.masked_fill(~mask, 0.0)
        return x

    def _direction(self, x: Tensor, layer: int, suffix: str) -> Tensor:
        """One direction of one layer from zero state, through ATen's fused LSTM (oneDNN / cuDNN)."""
        rnn = self.rnn
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        weights = [getattr(rnn, f"{name}_l{layer}{suffix}") for name in names]
        zeros = x.new_zeros(1, x.shape[1], rnn.hidden_size)
        return torch.lstm(x, (zeros, zeros), weights, True, 1, 0.0, self.training, False, False)[0]
