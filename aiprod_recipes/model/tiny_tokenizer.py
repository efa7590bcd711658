"""A Gemma-style tokenizer trained locally with sentencepiece, in the files HF loads.

ltx-core finds the tokenizer by the file name ``tokenizer.model`` and loads it with
``AutoTokenizer.from_pretrained(..., local_files_only=True)``, which wants the fast tokenizer.
Converting sentencepiece to fast needs protobuf (not a dependency), so ``tokenizer.json`` is
written here directly with the ``tokenizers`` library, mirroring transformers' GemmaConverter
(BPE with byte fallback, spaces as "▁", no dummy prefix, <bos> added by GemmaTokenizerFast).
Special ids follow Gemma: <pad>=0, <eos>=1, <bos>=2, <unk>=3.

Training is single-threaded on a fixed built-in corpus, so the files are byte-identical
across runs.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm
from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE
from transformers.convert_slow_tokenizer import generate_merges

from aiprod_recipes.model.tiny_config import (
    GEMMA_SPECIAL_PIECES,
    GEMMA_USER_PIECES,
    GEMMA_VOCAB_SIZE,
    TOKENIZER_CORPUS,
)

_SPECIAL_USER_PIECES = {"<start_of_turn>", "<end_of_turn>"}


@dataclass(frozen=True)
class TokenizerIds:
    """Ids the Gemma config must agree with."""

    vocab_size: int
    image_token_id: int
    boi_id: int
    eoi_id: int


def train_sentencepiece() -> bytes:
    """Serialized sentencepiece BPE model trained on the built-in corpus."""
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TOKENIZER_CORPUS * 4),
        model_writer=buffer,
        vocab_size=GEMMA_VOCAB_SIZE,
        model_type="bpe",
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        pad_piece=GEMMA_SPECIAL_PIECES["pad"],
        eos_piece=GEMMA_SPECIAL_PIECES["eos"],
        bos_piece=GEMMA_SPECIAL_PIECES["bos"],
        unk_piece=GEMMA_SPECIAL_PIECES["unk"],
        user_defined_symbols=list(GEMMA_USER_PIECES),
        byte_fallback=True,
        hard_vocab_limit=False,
        character_coverage=1.0,
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        split_digits=True,
        num_threads=1,
        minloglevel=2,
    )
    return buffer.getvalue()


def fast_tokenizer(model_bytes: bytes) -> Tokenizer:
    """The ``tokenizers`` equivalent of the sentencepiece model (GemmaConverter's recipe)."""
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    size = sp.get_piece_size()
    vocab_scores = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(size)]
    vocab = {piece: i for i, (piece, _) in enumerate(vocab_scores)}
    merges = generate_merges(vocab, vocab_scores)
    tokenizer = Tokenizer(
        BPE(vocab, merges, unk_token=GEMMA_SPECIAL_PIECES["unk"], fuse_unk=True, byte_fallback=True)
    )
    added = [
        AddedToken(
            sp.id_to_piece(i),
            normalized=False,
            special=sp.is_control(i) or sp.id_to_piece(i) in _SPECIAL_USER_PIECES,
        )
        for i in range(size)
        if sp.is_control(i) or sp.id_to_piece(i) in GEMMA_USER_PIECES
    ]
    tokenizer.add_tokens(added)
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    return tokenizer


def tokenizer_config() -> dict[str, object]:
    """``tokenizer_config.json``: Gemma's class, specials and image tokens."""
    return {
        "tokenizer_class": "GemmaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": GEMMA_SPECIAL_PIECES["bos"],
        "eos_token": GEMMA_SPECIAL_PIECES["eos"],
        "pad_token": GEMMA_SPECIAL_PIECES["pad"],
        "unk_token": GEMMA_SPECIAL_PIECES["unk"],
        "extra_special_tokens": {
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
        "model_max_length": 1024,
        "padding_side": "left",
        "spaces_between_special_tokens": False,
        "clean_up_tokenization_spaces": False,
    }


def write_tokenizer(out_dir: Path) -> TokenizerIds:
    """Write tokenizer.model, tokenizer.json and tokenizer_config.json into ``out_dir``."""
    model_bytes = train_sentencepiece()
    (out_dir / "tokenizer.model").write_bytes(model_bytes)
    fast = fast_tokenizer(model_bytes)
    (out_dir / "tokenizer.json").write_text(fast.to_str(pretty=True) + "\n")
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps(tokenizer_config(), indent=2, sort_keys=True) + "\n"
    )
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    return TokenizerIds(
        vocab_size=sp.get_piece_size(),
        image_token_id=sp.piece_to_id("<image_soft_token>"),
        boi_id=sp.piece_to_id("<start_of_image>"),
        eoi_id=sp.piece_to_id("<end_of_image>"),
    )
