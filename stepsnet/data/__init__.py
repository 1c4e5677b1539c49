"""Datasets and loaders. ``text``: corpora -> token memmaps (byte-level or BPE), the embedded default corpus."""
from .text import BPETokenizer, ByteTokenizer, TokenData, prepare_text, stdlib_files, tokenizer_from_spec

__all__ = ['BPETokenizer', 'ByteTokenizer', 'TokenData', 'prepare_text', 'stdlib_files', 'tokenizer_from_spec']
