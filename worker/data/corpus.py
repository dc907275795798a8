"""Real Khmer text for the word and line stages: the bundled corpus, how it is built, and its held-out part.

The bundled corpus (`corpus/khmer-words.txt.gz`) is the word list of Tesseract's `khm` model
(Google's tessdata_fast, Apache-2.0, as Debian's `tesseract-ocr-khm` ships it) together with the
project's own `khmer_words`, every entry normalised, deduplicated and checked against the
alphabet. `sala data corpus` rebuilds it, or builds a corpus from any text files.

A stable 5 % of entries (by a hash of the text) is held out: training never draws them; validation
and `sala data bench` draw only them, so quality is measured on words the model never trained on.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from worker.data.khmer_words import WORDS
from worker.khmer import in_charset, level_of, normalize
from worker.khmer.charset import is_khmer

BUNDLED_CORPUS = Path(__file__).with_name("corpus") / "khmer-words.txt.gz"
TESSDATA_KHM = "/usr/share/tesseract-ocr/5/tessdata/khm.traineddata"
HELD_OUT_PERCENT = 5


class CorpusError(RuntimeError):
    """A corpus that cannot be read or built, with what to do about it."""


def is_held_out(text: str) -> bool:
    """The same texts are held out on every machine and in every run."""
    return hashlib.blake2b(text.encode(), digest_size=4).digest()[0] * 100 // 256 < HELD_OUT_PERCENT


@dataclass
class Corpus:
    """Words (no space) and lines (with spaces) of a corpus, each split into training and held-out."""

    words: list[str]
    lines: list[str]
    held_out_words: list[str]
    held_out_lines: list[str]

    @classmethod
    def from_texts(cls, texts: list[str]) -> Corpus:
        words = list(dict.fromkeys(w for t in texts for w in t.split(" ") if level_of(w) >= 1))
        lines = [t for t in dict.fromkeys(texts) if " " in t and level_of(t) == 5]
        return cls([w for w in words if not is_held_out(w)], [t for t in lines if not is_held_out(t)],
                   [w for w in words if is_held_out(w)], [t for t in lines if is_held_out(t)])

    def pools(self, split: str) -> tuple[list[str], list[str]]:
        """(words, lines) to draw from: the held-out part for validation, the rest for training."""
        return (self.held_out_words, self.held_out_lines) if split == "val" else (self.words, self.lines)


def read_texts(path: str | Path) -> list[str]:
    """Normalised lines of a UTF-8 text file (gzip when it ends in .gz) that the alphabet can spell."""
    path = Path(path)
    try:
        raw = gzip.open(path, "rt", encoding="utf-8").read() if path.suffix == ".gz" else path.read_text("utf-8")
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise CorpusError(f"corpus {path} cannot be read: {exc}") from None
    return [t for t in map(normalize, raw.splitlines()) if t and in_charset(t) and any(map(is_khmer, t))]


def load_corpus(path: str | Path | None = None) -> Corpus:
    """A corpus file (one word or line per line), or the bundled one when `path` is None."""
    source = Path(path) if path is not None else BUNDLED_CORPUS
    corpus = Corpus.from_texts(read_texts(source))
    if not corpus.words:
        raise CorpusError(f"corpus {source} holds no usable Khmer text")
    if not corpus.held_out_words:
        corpus.held_out_words = corpus.words  # a tiny corpus has nothing to hold out; validation shares it
    return corpus


def tessdata_words(traineddata: str | Path) -> list[str]:
    """The word list inside a Tesseract LSTM model, unpacked with Tesseract's own tools."""
    tools = {t: shutil.which(t) for t in ("combine_tessdata", "dawg2wordlist")}
    if not all(tools.values()):
        raise CorpusError("combine_tessdata and dawg2wordlist are needed (Debian/Ubuntu: apt-get install "
                          "tesseract-ocr; macOS: brew install tesseract)")
    if not Path(traineddata).is_file():
        raise CorpusError(f"{traineddata} is not a file (Debian/Ubuntu: apt-get install tesseract-ocr-khm)")
    with tempfile.TemporaryDirectory() as tmp:
        prefix = f"{tmp}/model."
        _run([tools["combine_tessdata"], "-u", str(traineddata), prefix])
        unicharset, dawg, out = prefix + "lstm-unicharset", prefix + "lstm-word-dawg", f"{tmp}/words.txt"
        if not Path(dawg).is_file():
            raise CorpusError(f"{traineddata} holds no LSTM word list (lstm-word-dawg)")
        _run([tools["dawg2wordlist"], unicharset, dawg, out])
        return Path(out).read_text(encoding="utf-8").splitlines()


def _run(command: list[str | None]) -> None:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise CorpusError(f"{Path(str(command[0])).name} failed: {done.stderr.strip()[-500:]}")


@dataclass
class CorpusReport:
    read: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


def build_corpus(out: str | Path, *, tessdata: str | Path | None = None, texts: list[str | Path] = (),
                 builtin: bool = True) -> CorpusReport:
    """Write a corpus file from a Tesseract model's word list, text files and the built-in words."""
    raw: list[str] = list(WORDS) if builtin else []
    if tessdata is not None:
        raw += tessdata_words(tessdata)
    for path in texts:
        try:
            raw += Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise CorpusError(f"{path} cannot be read: {exc}") from None
    report, kept = CorpusReport(read=len(raw)), {}
    for line in raw:
        text = normalize(line)
        reason = _problem(text)
        if reason:
            report.dropped[reason] += 1
        elif text in kept:
            report.dropped["duplicate"] += 1
        else:
            kept[text] = None
    if not kept:
        raise CorpusError("no usable Khmer text in the given sources")
    body = "".join(t + "\n" for t in sorted(kept))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if out.suffix == ".gz":
        with tmp.open("wb") as raw, gzip.GzipFile("", "wb", fileobj=raw, mtime=0) as f:  # same words, same bytes
            f.write(body.encode("utf-8"))
    else:
        tmp.write_text(body, encoding="utf-8")
    tmp.replace(out)
    report.kept = len(kept)
    return report


def _problem(text: str) -> str | None:
    if not text:
        return "empty"
    if not any(map(is_khmer, text)):
        return "no Khmer"
    if not in_charset(text):
        return "outside the alphabet"
    return None
