"""Khmer script knowledge: alphabet, normalisation, clusters, categories, difficulty."""

from worker.khmer.categories import NUM_CATEGORIES, Category, categorize
from worker.khmer.charset import BLANK, CHARACTERS, CHARSET_VERSION, NUM_CLASSES, decode, encode, in_charset
from worker.khmer.clusters import segment
from worker.khmer.difficulty import CONTENT_LEVELS, LEVEL_CONTENTS, Difficulty, content_of, difficulty, level_of
from worker.khmer.normalize import normalize
from worker.khmer.orthography import cluster_problem, is_valid_cluster

__all__ = [
    "BLANK", "CHARACTERS", "CHARSET_VERSION", "CONTENT_LEVELS", "Category", "Difficulty", "LEVEL_CONTENTS",
    "NUM_CATEGORIES", "NUM_CLASSES", "categorize", "cluster_problem", "content_of", "decode", "difficulty",
    "encode", "in_charset", "is_valid_cluster", "level_of", "normalize", "segment",
]
