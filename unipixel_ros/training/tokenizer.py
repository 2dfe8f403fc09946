"""The synthetic model's tokenizer: bytes, plus one token for each word of the synthetic requests.

The tiny tokenizer spells everything byte by byte; a language model trained from
scratch in minutes then spends most of its steps learning to spell "yellow". Here the
same byte-level BPE gets merges that make every word of the synthetic requests and
answers (colours, shapes, directions, the request and answer templates, the memory
prefix) a single token, with and without a leading space, as a word-level BPE
vocabulary would. Any other text still round-trips byte by byte.
"""
from __future__ import annotations

import re

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

from unipixel_ros.memory import IMAGE_PREFIX, VIDEO_PREFIX
from unipixel_ros.model.chat import DEFAULT_SYSTEM_PROMPT, END_OF_TEXT, IM_END
from unipixel_ros.model.tiny import TINY_SPECIAL_TOKENS
from unipixel_ros.prompts import LOCALIZE_OBJECTS_SUFFIX
from unipixel_ros.synthetic.requests import DIRECTIONS, RELATIONS
from unipixel_ros.synthetic.scenes import PALETTE, SHAPES

# Request and answer phrasings of the synthetic generator and of the pipeline's templates.
_PHRASES = (
    "Please segment Segment Can you segment Sure, it is they are and the a an",
    "What colour colours shape shapes is are Is partly hidden behind another during video in image",
    "Which covers part of In which direction does move closest to last frame yes no assistant user system",
    " ".join(RELATIONS.values()), LOCALIZE_OBJECTS_SUFFIX, VIDEO_PREFIX, IMAGE_PREFIX, DEFAULT_SYSTEM_PROMPT,
)
WORDS: tuple[str, ...] = tuple(dict.fromkeys(
    [*PALETTE, *SHAPES, *DIRECTIONS, *(w for p in _PHRASES for w in re.findall(r"[A-Za-z]+", p))]))


def _byte_symbols(text: str) -> list[str]:
    """``text`` as the byte-level pre-tokenizer's symbols (space -> 'Ġ' etc.)."""
    pieces = pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(text)
    return list("".join(piece for piece, _ in pieces))


def _apply(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """BPE on one word: repeatedly merge the lowest-ranked adjacent pair (leftmost first)."""
    symbols = list(symbols)
    while len(symbols) > 1:
        rank, index = min((ranks.get(pair, len(ranks)), i) for i, pair in enumerate(zip(symbols, symbols[1:])))
        if rank == len(ranks):
            break
        symbols[index:index + 2] = [symbols[index] + symbols[index + 1]]
    return symbols


def _merges(words: tuple[str, ...]) -> list[tuple[str, str]]:
    """Merges that make each word, bare and after a space, one symbol.

    Each new merge joins the first two symbols the merges so far leave of a word, so it
    ranks after every merge that word already uses (and after every earlier word's), and
    adding it never changes how an earlier word splits.
    """
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        for variant in (word, " " + word):
            while len(pieces := _apply(_byte_symbols(variant), ranks)) > 1:
                ranks[(pieces[0], pieces[1])] = len(ranks)
    return list(ranks)


def build_synthetic_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE with the word merges, then Qwen2.5-VL's and UniPixel's special tokens."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges = _merges(WORDS)
    vocab = {symbol: i for i, symbol in enumerate(alphabet)}
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in TINY_SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=IM_END, pad_token=END_OF_TEXT)


def build_synthetic_processor() -> Qwen2_5_VLProcessor:
    """Qwen2.5-VL's processor around the synthetic tokenizer (standard patch, merge and temporal sizes)."""
    return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=build_synthetic_tokenizer(),
                               video_processor=Qwen2VLVideoProcessor())
