"""The CRNN recogniser: a conv backbone that reads a text line, a BiLSTM that reads it left to right.

Layout: four conv blocks (3x3 conv, BatchNorm, ReLU) each followed by a pool. The first two pools
halve height and width, the last two halve height only, so the width is downsampled by exactly
``CRNN.downsample`` (4): a 256 px wide line becomes 64 frames, enough for CTC to emit Khmer
clusters, which are rarely narrower than 8 px at height 32. What is left of the height
(``image_height / 16`` rows) is flattened into the channel axis rather than averaged away, because
Khmer puts vowels and subscripts above and below the base line and their position matters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

WIDTH_POOLS = 2


def _conv_block(in_channels: int, out_channels: int, pool: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(pool, pool),
    )


class CRNN(nn.Module):
    """Images ``[B, 1, H, W]`` to frame features ``[T, B, 2 * hidden_size]`` with ``T = W // 4``.

    ``widths`` (pixels, before padding) gives each line's own frame count, ``widths // 4``; the
    LSTM then runs on packed sequences so right padding never leaks into the backward direction.
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
        if images.shape[2] != self.image_height:
            raise ValueError(f"expected height {self.image_height}, got {images.shape[2]}")
        maps = self.conv(images)
        b, c, h, t = maps.shape
        seq = maps.reshape(b, c * h, t).permute(2, 0, 1)
        if widths is None:
            lengths = torch.full((b,), t, dtype=torch.long)
        else:
            lengths = self.output_lengths(widths.cpu()).clamp(max=t)
        if bool((lengths == t).all()):
            out, _ = self.rnn(seq)
        else:
            packed = pack_padded_sequence(seq, lengths, enforce_sorted=False)
            out, _ = pad_packed_sequence(self.rnn(packed)[0], total_length=t)
        return self.dropout(out), lengths.to(images.device)
