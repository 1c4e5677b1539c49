"""Text corpora -> ``uint16`` token memmaps, once, so training reads random windows without a tokenizer.

``prepare_text`` writes ``train.bin``, ``val.bin`` (and ``test.bin`` when the corpus has a test split) plus
``meta.json`` describing the tokenizer and the splits, and ``tokenizer.json`` for BPE tokenizers. Everything is
tokenized and checked before the first byte is written, the files are written into a temporary folder and moved
into place together, so a failure never leaves a half-prepared directory over a good one, and an output folder
that already holds prepared data is refused unless ``force=True``.

Input text is decoded with ``encoding`` (UTF-8 by default) and ``errors`` (``'strict'`` by default: a byte that
does not decode is an error naming the file and its offset; ``'replace'`` accepts it). A binary file is refused
whatever ``errors`` says: one whose text holds a NUL character, or in which more than 5% of the characters are
control characters other than tab, newline, vertical tab, form feed, carriage return, backspace and escape
(text in any encoding has next to none; compiled code, images and archives are full of them).

Corpora:

* files and folders (folders are walked recursively, hidden entries skipped) split into train/val by file,
  deterministically (a hash of each file's relative path), or by the tail of the text when only one file is given;
* explicit ``train`` / ``val`` / ``test`` files;
* WikiText-103 raw (a folder holding ``wiki.train.raw``, ``wiki.valid.raw``, ``wiki.test.raw``);
* the embedded default: the sources of the running Python's standard library (tests excluded), which every
  Python installation ships, so nothing is downloaded. They are read as UTF-8 (the encoding of Python sources);
  a file that fails the checks above is left out and counted in ``meta.json`` (``source.skipped``).

Tokenizers: bytes (the default: 256 ids, UTF-8 bytes), or BPE through Hugging Face ``tokenizers``, loaded from a
``tokenizer.json``, from GPT-2's ``vocab.json`` + ``merges.txt``, or trained on the training split.
"""
from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
import sysconfig
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .outputs import refuse_existing, staged_output

__all__ = [
    'ByteTokenizer', 'BPETokenizer', 'Tokenizer', 'load_tokenizer', 'tokenizer_from_spec', 'stdlib_files',
    'prepare_text', 'TokenData', 'META_FILE', 'WIKITEXT_FILES',
]

META_FILE = 'meta.json'
WIKITEXT_FILES = {'train': 'wiki.train.raw', 'val': 'wiki.valid.raw', 'test': 'wiki.test.raw'}
MAX_UINT16_VOCAB = 65536
DEFAULT_BPE_VOCAB = 8192
EOT = '<|endoftext|>'
OUTPUT_FILES = (META_FILE, 'train.bin', 'val.bin', 'test.bin', 'tokenizer.json')
DECODE_ERRORS = ('strict', 'replace', 'ignore', 'backslashreplace')
BINARY_CONTROL_SHARE = 0.05
# C0 control characters and DEL, less those that text uses: \b \t \n \v \f \r and ESC (terminal colours)
_CONTROL = re.compile('[\x00-\x07\x0e-\x1a\x1c-\x1f\x7f]')


class ByteTokenizer:
    """UTF-8 bytes as tokens: 256 ids, no unknowns, nothing to download or train."""
    kind = 'byte'
    vocab_size = 256
    eot_id: Optional[int] = None

    def encode(self, text: str) -> List[int]:
        return list(text.encode('utf-8'))

    def encode_array(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode('utf-8'), dtype=np.uint8).astype(np.uint16)

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode('utf-8', errors='replace')

    def spec(self) -> Dict[str, object]:
        return {'kind': 'byte', 'vocab_size': 256}


class BPETokenizer:
    """A Hugging Face ``tokenizers.Tokenizer`` (byte-level BPE such as GPT-2's, or any other model)."""
    kind = 'bpe'

    def __init__(self, tok, source: str = ''):
        self.tok = tok
        self.source = source
        self.vocab_size = int(tok.get_vocab_size(with_added_tokens=True))
        self.eot_id = tok.token_to_id(EOT)

    @classmethod
    def from_file(cls, path: str) -> BPETokenizer:
        """Load a ``tokenizer.json`` written by Hugging Face ``tokenizers``."""
        from tokenizers import Tokenizer as HFTokenizer
        _require_file(path, 'tokenizer file')
        try:
            tok = HFTokenizer.from_file(path)
        except Exception as e:
            raise ValueError(
                f'tokenizer file {path!r} does not parse ({e}); expected a Hugging Face tokenizers JSON file') from e
        return cls(tok, source=path)

    @classmethod
    def from_json(cls, text: str, source: str = '') -> BPETokenizer:
        from tokenizers import Tokenizer as HFTokenizer
        try:
            tok = HFTokenizer.from_str(text)
        except Exception as e:
            raise ValueError(f'tokenizer JSON {source!r} does not parse ({e})') from e
        return cls(tok, source=source)

    @classmethod
    def from_gpt2_files(cls, vocab: str, merges: str) -> BPETokenizer:
        """Load GPT-2 style ``vocab.json`` + ``merges.txt`` as a byte-level BPE tokenizer."""
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers
        _require_file(vocab, 'BPE vocabulary')
        _require_file(merges, 'BPE merges')
        try:
            with open(vocab, encoding='utf-8') as f:
                json.load(f)
            model = models.BPE.from_file(vocab, merges)
        except Exception as e:
            raise ValueError(
                f'BPE files {vocab!r} / {merges!r} do not parse ({e}); expected GPT-2 style vocab.json and '
                'merges.txt') from e
        tok = HFTokenizer(model)
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        return cls(tok, source=f'{vocab} + {merges}')

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int) -> BPETokenizer:
        """Train a byte-level BPE tokenizer with ``vocab_size`` ids (``<|endoftext|>`` included) on ``texts``."""
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers
        if not 257 <= vocab_size <= MAX_UINT16_VOCAB:
            raise ValueError(f'BPE vocab_size must be in [257, {MAX_UINT16_VOCAB}] for uint16 ids, got {vocab_size}')
        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=[EOT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok, source=f'trained (vocab {vocab_size})')

    def encode(self, text: str) -> List[int]:
        return self.tok.encode(text).ids

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self.encode(text), dtype=np.int64)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def to_json(self) -> str:
        return self.tok.to_str()

    def spec(self) -> Dict[str, object]:
        return {'kind': 'bpe', 'vocab_size': self.vocab_size, 'source': self.source, 'eot_id': self.eot_id}


Tokenizer = object  # ByteTokenizer | BPETokenizer (duck-typed: encode, decode, vocab_size, kind, spec)


def _require_file(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{what} {path!r} does not exist')


def load_tokenizer(
        kind: str = 'byte',
        tokenizer_file: Optional[str] = None,
        vocab_file: Optional[str] = None,
        merges_file: Optional[str] = None,
) -> Optional[object]:
    """A ready tokenizer, or None when a BPE tokenizer is to be trained on the corpus."""
    if kind == 'byte':
        if tokenizer_file or vocab_file or merges_file:
            raise ValueError('tokenizer files were given with --tokenizer byte; expected --tokenizer bpe')
        return ByteTokenizer()
    if kind != 'bpe':
        raise ValueError(f"unknown tokenizer {kind!r}; expected 'byte' or 'bpe'")
    if tokenizer_file:
        return BPETokenizer.from_file(tokenizer_file)
    if vocab_file or merges_file:
        if not (vocab_file and merges_file):
            raise ValueError('GPT-2 style BPE needs both vocab.json and merges.txt')
        return BPETokenizer.from_gpt2_files(vocab_file, merges_file)
    return None


def tokenizer_from_spec(spec: Dict[str, object], tokenizer_json: Optional[str] = None):
    """Rebuild the tokenizer recorded in ``meta.json`` or a checkpoint."""
    if spec.get('kind') == 'byte':
        return ByteTokenizer()
    if spec.get('kind') == 'bpe':
        if not tokenizer_json:
            raise ValueError('a BPE tokenizer spec needs its tokenizer JSON')
        return BPETokenizer.from_json(tokenizer_json, source=str(spec.get('source', '')))
    raise ValueError(f"unknown tokenizer spec {spec!r}; expected kind 'byte' or 'bpe'")


# ----------------------------------------------------------------------------------------------------------------
# Corpora


def stdlib_files() -> Tuple[str, List[str]]:
    """The running Python's standard-library ``.py`` files (tests and site-packages excluded), sorted.

    Returns:
        (root, relative paths).
    """
    root = sysconfig.get_paths()['stdlib']
    skip = {'site-packages', 'dist-packages', 'test', 'tests', 'idle_test', '__pycache__'}
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip and not d.startswith('.'))
        for name in sorted(filenames):
            if name.endswith('.py'):
                files.append(os.path.relpath(os.path.join(dirpath, name), root))
    if not files:
        raise FileNotFoundError(f'no Python sources found in the standard library at {root!r}')
    return root, sorted(files)


def _walk(path: str) -> List[str]:
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise FileNotFoundError(f'corpus path {path!r} does not exist; expected a text file or a folder of them')
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith('.'))
        out.extend(os.path.join(dirpath, f) for f in sorted(filenames) if not f.startswith('.'))
    return out


def _read(path: str, encoding: str = 'utf-8', errors: str = 'strict') -> str:
    """The text of ``path``; ``ValueError`` naming the file when it is binary or does not decode."""
    with open(path, 'rb') as f:
        data = f.read()
    try:
        text = data.decode(encoding, errors=errors)
    except UnicodeDecodeError as e:
        _refuse_binary(path, data.decode(encoding, errors='replace'))  # say "binary" rather than "not UTF-8"
        line = data.count(b'\n', 0, e.start) + 1
        raise ValueError(
            f'corpus file {path!r} is not valid {encoding}: byte 0x{data[e.start]:02x} at offset {e.start} (line '
            f'{line}): {e.reason}. Pass encoding=\'latin-1\' (--encoding latin-1) if it is Latin-1 text, or '
            f'errors=\'replace\' (--errors replace) to read it with replacement characters') from e
    _refuse_binary(path, text)
    return text


def _refuse_binary(path: str, text: str) -> None:
    nul = text.find('\x00')
    if nul >= 0:
        raise ValueError(f'corpus file {path!r} is binary, not text: it holds a NUL character (character {nul}); '
                         'expected a text file')
    controls = len(_CONTROL.findall(text))
    if controls > BINARY_CONTROL_SHARE * len(text):
        raise ValueError(
            f'corpus file {path!r} is binary, not text: {controls} of its {len(text)} characters '
            f'({controls / len(text):.0%}) are control characters, more than {BINARY_CONTROL_SHARE:.0%}; '
            'expected a text file')


def _hash01(rel: str) -> float:
    """A stable pseudo-random number in [0, 1) for a file's relative path."""
    return int.from_bytes(hashlib.sha1(rel.replace(os.sep, '/').encode('utf-8')).digest()[:8], 'big') / 2.0 ** 64


def _assign_splits(rels: Sequence[str], val_fraction: float) -> List[bool]:
    """Per file, whether it is held out: a hash of its path below ``val_fraction`` (at least one file held out)."""
    h = [_hash01(r) for r in rels]
    held = [x < val_fraction for x in h]
    if len(rels) > 1 and not any(held):
        held[min(range(len(h)), key=h.__getitem__)] = True
    if len(rels) > 1 and all(held):
        held[max(range(len(h)), key=h.__getitem__)] = False
    return held


def _collect(
        inputs: Sequence[str],
        train: Optional[str],
        val: Optional[str],
        test: Optional[str],
        val_fraction: float,
        max_bytes: Optional[int],
        encoding: str,
        errors: str,
) -> Tuple[Dict[str, List[str]], Dict[str, object]]:
    """Texts per split (a list of documents each) and a description of the source."""
    def read(path: str) -> str:
        _require_file(path, 'corpus file')
        return _read(path, encoding, errors)

    decoding = {'encoding': encoding, 'errors': errors}
    if train or val or test:
        splits = {'train': [read(train)], 'val': [read(val)]}
        if test:
            splits['test'] = [read(test)]
        return splits, {'kind': 'files', 'train': train, 'val': val, 'test': test, **decoding}
    if not inputs:
        root, rels = stdlib_files()
        splits, skipped = _split_files(root, rels, val_fraction, max_bytes)
        return splits, {'kind': 'python-stdlib', 'root': root, 'files': len(rels), 'skipped': skipped,
                        'val_fraction': val_fraction}
    if len(inputs) == 1 and os.path.isdir(inputs[0]) and all(
            os.path.isfile(os.path.join(inputs[0], f)) for f in (WIKITEXT_FILES['train'], WIKITEXT_FILES['val'])):
        d = inputs[0]
        splits = {s: [read(os.path.join(d, f))] for s, f in WIKITEXT_FILES.items()
                  if os.path.isfile(os.path.join(d, f))}
        return splits, {'kind': 'wikitext', 'root': d, **decoding}
    files: List[Tuple[str, str]] = []
    for p in inputs:
        for f in _walk(p):
            files.append((os.path.relpath(f, p) if os.path.isdir(p) else os.path.basename(f), f))
    if not files:
        raise ValueError(f'corpus {list(inputs)} holds no files; expected text files')
    if len(files) == 1:
        text = read(files[0][1])
        cut = int(len(text) * (1 - val_fraction))
        return {'train': [text[:cut]], 'val': [text[cut:]]}, {
            'kind': 'file-tail', 'file': files[0][1], 'val_fraction': val_fraction, **decoding}
    splits: Dict[str, List[str]] = {'train': [], 'val': []}
    for (_, f), held in zip(files, _assign_splits([rel for rel, _ in files], val_fraction)):
        splits['val' if held else 'train'].append(read(f))
    return splits, {'kind': 'files-by-hash', 'inputs': list(inputs), 'files': len(files),
                    'val_fraction': val_fraction, **decoding}


def _split_files(
        root: str, rels: Sequence[str], val_fraction: float, max_bytes: Optional[int],
) -> Tuple[Dict[str, List[str]], int]:
    """The embedded corpus's texts per split, and how many files were left out for not being UTF-8 text."""
    if max_bytes is not None:  # a capped corpus is a hash-ordered sample of the files, not the first ones
        chosen, total = [], 0
        for rel in sorted(rels, key=_hash01):
            if total >= max_bytes:
                break
            chosen.append(rel)
            total += os.path.getsize(os.path.join(root, rel))
        rels = sorted(chosen)
    splits: Dict[str, List[str]] = {'train': [], 'val': []}
    skipped = 0
    for rel, held in zip(rels, _assign_splits(rels, val_fraction)):
        try:
            splits['val' if held else 'train'].append(_read(os.path.join(root, rel)))
        except ValueError:
            skipped += 1
    return splits, skipped


def _check_prepare_args(
        inputs: Sequence[str], train: Optional[str], val: Optional[str], test: Optional[str], tokenizer: str,
        loads_tokenizer: bool, vocab_size: Optional[int], val_fraction: float, max_bytes: Optional[int],
        encoding: str, errors: str,
) -> None:
    """Refuse arguments that are out of range, contradict each other or would be ignored, before any work."""
    if train or val or test:
        if inputs:
            raise ValueError('give either corpus paths or --train/--val/--test files, not both')
        if not (train and val):
            raise ValueError('explicit splits need at least --train and --val files')
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f'val_fraction must be in (0, 1), got {val_fraction}')
    if max_bytes is not None:
        if max_bytes <= 0:
            raise ValueError(f'max_bytes must be > 0, got {max_bytes}')
        if inputs or train:
            raise ValueError(f'max_bytes={max_bytes} caps the embedded corpus only; it was given with corpus files')
    if vocab_size is not None:
        if tokenizer != 'bpe' or loads_tokenizer:
            what = f"tokenizer={tokenizer!r}" if tokenizer != 'bpe' else 'a BPE tokenizer loaded from files'
            raise ValueError(f'vocab_size={vocab_size} sets the size of a BPE tokenizer trained on the corpus, but '
                             f'it was given with {what}, which has its own vocabulary; leave vocab_size out')
        if not 257 <= vocab_size <= MAX_UINT16_VOCAB:
            raise ValueError(f'vocab_size must be in [257, {MAX_UINT16_VOCAB}] for uint16 ids, got {vocab_size}')
    try:
        codecs.lookup(encoding)
    except LookupError as e:
        raise ValueError(f'unknown text encoding {encoding!r}; expected a Python codec name such as '
                         "'utf-8' or 'latin-1'") from e
    if errors not in DECODE_ERRORS:
        raise ValueError(f'errors must be one of {DECODE_ERRORS}, got {errors!r}')


def prepare_text(
        out_dir: str,
        inputs: Sequence[str] = (),
        train: Optional[str] = None,
        val: Optional[str] = None,
        test: Optional[str] = None,
        tokenizer: str = 'byte',
        tokenizer_file: Optional[str] = None,
        vocab_file: Optional[str] = None,
        merges_file: Optional[str] = None,
        vocab_size: Optional[int] = None,
        val_fraction: float = 0.05,
        max_bytes: Optional[int] = None,
        encoding: str = 'utf-8',
        errors: str = 'strict',
        force: bool = False,
) -> Dict[str, object]:
    """Tokenize a corpus into ``out_dir/{train,val,test}.bin`` (``uint16``) and ``out_dir/meta.json``.

    Args:
        out_dir: Output folder (created).
        inputs: Text files and folders; empty means the embedded standard-library corpus (or the explicit splits).
        train: Explicit training file (with ``val`` and optionally ``test``).
        val: Explicit validation file.
        test: Explicit test file.
        tokenizer: ``'byte'`` or ``'bpe'``.
        tokenizer_file: Hugging Face ``tokenizer.json`` (BPE).
        vocab_file: GPT-2 ``vocab.json`` (BPE, with ``merges_file``).
        merges_file: GPT-2 ``merges.txt``.
        vocab_size: Size of a BPE tokenizer trained on the training split, in [257, 65536] (default 8192). Only
            for ``tokenizer='bpe'`` without tokenizer files: anywhere else it is an error, not silently ignored.
        val_fraction: Share of files (or of the text of a single file) held out for validation.
        max_bytes: Stop adding standard-library files after this many bytes (embedded corpus only).
        encoding: Text encoding of the corpus files (a Python codec name, e.g. ``'latin-1'``). The embedded corpus
            is always read as UTF-8.
        errors: What a byte that does not decode does: ``'strict'`` (an error naming the file and the byte's
            offset), ``'replace'`` (U+FFFD), ``'ignore'`` or ``'backslashreplace'``. Binary files are refused
            whatever this says.
        force: Overwrite the prepared data already in ``out_dir`` (and remove its ``test.bin`` /
            ``tokenizer.json`` when this corpus and tokenizer have none). Without it, an ``out_dir`` that holds any
            of ``meta.json``, ``{train,val,test}.bin`` or ``tokenizer.json`` is an error and nothing is written.

    Returns:
        The metadata written to ``meta.json``.

    Raises:
        ValueError: An argument is out of range or ignored (the message names it), a corpus file is not text in
            ``encoding`` or is binary, a split is empty.
        FileNotFoundError: A corpus or tokenizer file does not exist.
        FileExistsError: ``out_dir`` holds prepared data and ``force`` is False.
    """
    loads_tokenizer = bool(tokenizer_file or vocab_file or merges_file)
    _check_prepare_args(inputs, train, val, test, tokenizer, loads_tokenizer, vocab_size, val_fraction, max_bytes,
                        encoding, errors)
    refuse_existing(out_dir, OUTPUT_FILES, force, 'newly prepared token data')
    tok = load_tokenizer(tokenizer, tokenizer_file, vocab_file, merges_file)
    texts, source = _collect(inputs, train, val, test, val_fraction, max_bytes, encoding, errors)
    for split, docs in texts.items():
        if not any(d.strip() for d in docs):
            where = source.get('file') or source.get('inputs') or source.get('root') or source.get(split)
            raise ValueError(f'the {split} split of corpus {where!r} is empty; expected some text in it')
    if tok is None:
        tok = BPETokenizer.train(texts['train'], vocab_size or DEFAULT_BPE_VOCAB)
    if tok.vocab_size > MAX_UINT16_VOCAB:
        raise ValueError(f'tokenizer has {tok.vocab_size} ids; uint16 memmaps hold at most {MAX_UINT16_VOCAB}')
    arrays: Dict[str, np.ndarray] = {}
    for split, docs in texts.items():
        parts = []
        for doc in docs:
            ids = tok.encode_array(doc)
            parts.append(ids)
            if tok.eot_id is not None:
                parts.append(np.asarray([tok.eot_id], dtype=np.int64))
            elif tok.kind == 'byte' and len(docs) > 1:
                parts.append(np.asarray([10], dtype=np.int64))  # documents end with a newline
        arr = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        if arr.size and int(arr.max()) >= tok.vocab_size:
            raise ValueError(f'token id {int(arr.max())} is not below the vocabulary size {tok.vocab_size}')
        arrays[split] = arr.astype(np.uint16)
    meta: Dict[str, object] = {
        'format': 'stepsnet-text',
        'dtype': 'uint16',
        'vocab_size': tok.vocab_size,
        'tokenizer': tok.spec(),
        'tokens': {s: int(a.size) for s, a in arrays.items()},
        'characters': {s: int(sum(len(d) for d in texts[s])) for s in texts},
        'bytes': {s: int(sum(len(d.encode('utf-8')) for d in texts[s])) for s in texts},
        'source': source,
    }
    written = {META_FILE} | {f'{split}.bin' for split in arrays} | ({'tokenizer.json'} if tok.kind == 'bpe' else set())
    with staged_output(out_dir) as stage:
        if tok.kind == 'bpe':
            with open(os.path.join(stage, 'tokenizer.json'), 'w', encoding='utf-8') as f:
                f.write(tok.to_json())
        for split, arr in arrays.items():
            arr.tofile(os.path.join(stage, f'{split}.bin'))
        with open(os.path.join(stage, META_FILE), 'w', encoding='utf-8') as f:
            json.dump(meta, f, indent=2)
    for name in set(OUTPUT_FILES) - written:  # an earlier preparation's, which the new meta.json does not describe
        stale = os.path.join(out_dir, name)
        if os.path.isfile(stale):
            os.remove(stale)
    return meta


# ----------------------------------------------------------------------------------------------------------------
# Reading prepared data


@dataclass
class TokenData:
    """Prepared token memmaps of one folder, checked against a vocabulary and a context length."""
    root: str
    meta: Dict[str, object]
    splits: Dict[str, np.memmap]

    @classmethod
    def open(cls, root: str, vocab_size: Optional[int] = None) -> TokenData:
        """Open ``root`` (written by :func:`prepare_text`) and check its ids are below ``vocab_size``."""
        meta_path = os.path.join(root, META_FILE)
        if not os.path.isdir(root):
            raise FileNotFoundError(f'data folder {root!r} does not exist; run `stepsnet data prepare-text` first')
        _require_file(meta_path, 'data metadata')
        try:
            with open(meta_path, encoding='utf-8') as f:
                meta = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f'{meta_path!r} is not valid JSON ({e})') from e
        if meta.get('format') != 'stepsnet-text' or meta.get('dtype') != 'uint16':
            raise ValueError(f'{meta_path!r} is not a stepsnet text metadata file (uint16 token memmaps)')
        splits = {}
        for split in ('train', 'val', 'test'):
            path = os.path.join(root, f'{split}.bin')
            if os.path.isfile(path) and os.path.getsize(path) >= 2:
                splits[split] = np.memmap(path, dtype=np.uint16, mode='r')
        for split in ('train', 'val'):
            if split not in splits:
                raise FileNotFoundError(f'{os.path.join(root, split + ".bin")!r} is missing or empty')
        data = cls(root, meta, splits)
        limit = int(meta['vocab_size']) if vocab_size is None else vocab_size
        data.check_vocab(limit)
        return data

    @property
    def vocab_size(self) -> int:
        return int(self.meta['vocab_size'])

    def tokenizer(self):
        spec = self.meta['tokenizer']
        text = None
        if spec.get('kind') == 'bpe':
            path = os.path.join(self.root, 'tokenizer.json')
            _require_file(path, 'tokenizer file')
            with open(path, encoding='utf-8') as f:
                text = f.read()
        return tokenizer_from_spec(spec, text)

    def tokenizer_json(self) -> Optional[str]:
        path = os.path.join(self.root, 'tokenizer.json')
        if self.meta['tokenizer'].get('kind') != 'bpe' or not os.path.isfile(path):
            return None
        with open(path, encoding='utf-8') as f:
            return f.read()

    def check_vocab(self, vocab_size: int) -> None:
        """Raise if any stored id is not below ``vocab_size`` (the model's embedding would index out of range)."""
        for split, arr in self.splits.items():
            top = 0
            for i in range(0, len(arr), 1 << 24):
                top = max(top, int(arr[i:i + (1 << 24)].max()))
            if top >= vocab_size:
                raise ValueError(
                    f'{split}.bin in {self.root!r} holds token id {top}, not below the vocabulary size {vocab_size}')

    def check_context(self, block_size: int, split: str = 'train') -> None:
        n = len(self.splits[split])
        if n < block_size + 1:
            raise ValueError(
                f'{split} split has {n} tokens, fewer than one window of block_size + 1 = {block_size + 1}')

    def get_batch(
            self,
            split: str,
            batch_size: int,
            block_size: int,
            generator: torch.Generator,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Random windows ``x`` and their next-token targets ``y`` of shape (batch_size, block_size)."""
        arr = self.splits[split]
        starts = torch.randint(len(arr) - block_size - 1 + 1, (batch_size,), generator=generator).tolist()
        buf = np.stack([np.asarray(arr[s:s + block_size + 1], dtype=np.int64) for s in starts])
        t = torch.from_numpy(buf)
        return t[:, :-1].contiguous(), t[:, 1:].contiguous()
