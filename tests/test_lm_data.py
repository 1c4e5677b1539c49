"""Text preparation: byte-level and BPE tokenizers, WikiText layout, the embedded corpus, bad input."""
import json
import os

import numpy as np
import pytest
from snapshots import snapshot

import stepsnet.data.text as text_module
from stepsnet.data.text import BPETokenizer, TokenData, prepare_text, stdlib_files

TEXT_A = 'def add(a, b):\n    return a + b\n' * 40
TEXT_B = 'class Point:\n    """A point."""\n    x: int = 0\n' * 40


@pytest.fixture()
def corpus(tmp_path):
    d = tmp_path / 'corpus'
    (d / 'pkg').mkdir(parents=True)
    for i in range(12):
        (d / 'pkg' / f'mod{i}.py').write_text(TEXT_A if i % 2 else TEXT_B)
    return d


def test_byte_level_round_trip(corpus, tmp_path):
    out = tmp_path / 'data'
    meta = prepare_text(str(out), [str(corpus)], val_fraction=0.3)
    assert meta['vocab_size'] == 256 and meta['tokenizer']['kind'] == 'byte'
    data = TokenData.open(str(out))
    total = sum(len(a) for a in data.splits.values())
    assert total == sum(meta['tokens'].values()) == 12 * (len(TEXT_A) + len(TEXT_B)) // 2 + 12
    assert meta['tokens']['val'] > 0 and meta['tokens']['train'] > meta['tokens']['val']
    text = data.tokenizer().decode(np.asarray(data.splits['train'][:200]))
    assert text.startswith(('def add', 'class Point'))
    # deterministic: the same corpus gives the same files
    prepare_text(str(tmp_path / 'again'), [str(corpus)], val_fraction=0.3)
    assert (out / 'train.bin').read_bytes() == (tmp_path / 'again' / 'train.bin').read_bytes()


def test_wikitext_layout_and_bpe_training(tmp_path):
    wt = tmp_path / 'wikitext-103-raw'
    wt.mkdir()
    for split, name in (('train', 'wiki.train.raw'), ('valid', 'wiki.valid.raw'), ('test', 'wiki.test.raw')):
        (wt / name).write_text(f' = {split} = \n' + 'The cat sat on the mat . ' * 50 + '\n')
    out = tmp_path / 'data'
    meta = prepare_text(str(out), [str(wt)], tokenizer='bpe', vocab_size=300)
    assert meta['source']['kind'] == 'wikitext'
    assert set(meta['tokens']) == {'train', 'val', 'test'}
    assert (out / 'test.bin').is_file() and (out / 'tokenizer.json').is_file()
    data = TokenData.open(str(out))
    tok = data.tokenizer()
    assert tok.vocab_size <= 300
    assert tok.decode(tok.encode('The cat sat')) == 'The cat sat'
    assert int(np.asarray(data.splits['train']).max()) < tok.vocab_size


def test_gpt2_vocab_and_merges_files(tmp_path):
    trained = BPETokenizer.train(['hello world, hello there, general kenobi'] * 20, vocab_size=280)
    trained.tok.model.save(str(tmp_path))
    loaded = BPETokenizer.from_gpt2_files(str(tmp_path / 'vocab.json'), str(tmp_path / 'merges.txt'))
    assert loaded.encode('hello there') == trained.encode('hello there')
    assert loaded.decode(loaded.encode('hello there')) == 'hello there'
    f = tmp_path / 'saved.json'
    f.write_text(trained.to_json())
    assert BPETokenizer.from_file(str(f)).encode('kenobi') == trained.encode('kenobi')


def test_embedded_corpus_is_the_standard_library():
    root, files = stdlib_files()
    assert 'os.py' in files and 'json/decoder.py' in [f.replace(os.sep, '/') for f in files]
    assert not any(f.startswith('test' + os.sep) for f in files)


def test_embedded_corpus_prepares(tmp_path):
    meta = prepare_text(str(tmp_path / 'data'), max_bytes=400_000)
    assert meta['source']['kind'] == 'python-stdlib'
    assert meta['tokens']['train'] + meta['tokens']['val'] >= 400_000
    assert meta['tokens']['train'] > 0 and meta['tokens']['val'] > 0


def test_missing_corpus(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        prepare_text(str(tmp_path / 'out'), [str(tmp_path / 'nope')])
    assert not (tmp_path / 'out').exists()


def test_empty_corpus_overwrites_nothing(corpus, tmp_path):
    out = tmp_path / 'data'
    prepare_text(str(out), [str(corpus)], val_fraction=0.3)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    empty = tmp_path / 'empty.txt'
    empty.write_text('   \n')
    with pytest.raises(ValueError, match='is empty'):
        prepare_text(str(out), [str(empty)], force=True)
    (tmp_path / 'emptydir').mkdir()
    with pytest.raises(ValueError, match='holds no files'):
        prepare_text(str(out), [str(tmp_path / 'emptydir')], force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_tokenizer_file_that_does_not_parse(corpus, tmp_path):
    out = tmp_path / 'data'
    prepare_text(str(out), [str(corpus)], val_fraction=0.3)
    before = (out / 'train.bin').read_bytes()
    bad = tmp_path / 'tokenizer.json'
    bad.write_text('{"version": "1.0", "model": ')
    with pytest.raises(ValueError, match='does not parse'):
        prepare_text(str(out), [str(corpus)], tokenizer='bpe', tokenizer_file=str(bad), force=True)
    vocab, merges = tmp_path / 'vocab.json', tmp_path / 'merges.txt'
    vocab.write_text('not json')
    merges.write_text('#version: 0.2\n')
    with pytest.raises(ValueError, match='do not parse'):
        prepare_text(str(out), [str(corpus)], tokenizer='bpe', vocab_file=str(vocab), merges_file=str(merges),
                     force=True)
    assert (out / 'train.bin').read_bytes() == before
    assert not (out / 'tokenizer.json').exists()


def test_token_id_not_below_vocabulary(corpus, tmp_path):
    out = tmp_path / 'data'
    prepare_text(str(out), [str(corpus)], val_fraction=0.3)
    arr = np.fromfile(out / 'val.bin', dtype=np.uint16)
    arr[3] = 300
    arr.tofile(out / 'val.bin')
    with pytest.raises(ValueError, match='token id 300, not below the vocabulary size 256'):
        TokenData.open(str(out))
    meta = json.loads((out / 'meta.json').read_text())
    meta['vocab_size'] = 512
    (out / 'meta.json').write_text(json.dumps(meta))
    data = TokenData.open(str(out))  # fine for a 512-id vocabulary ...
    with pytest.raises(ValueError, match='not below the vocabulary size 256'):
        data.check_vocab(256)  # ... but not for a 256-id model


def decoded(out):
    data = TokenData.open(str(out))
    return ''.join(data.tokenizer().decode(np.asarray(a)) for a in data.splits.values())


def test_latin1_text_needs_its_encoding(tmp_path):
    f = tmp_path / 'lettres.txt'
    f.write_bytes('Le café de Noël est fermé.\n'.encode('latin-1') * 30)
    with pytest.raises(ValueError, match=r"lettres\.txt' is not valid utf-8: byte 0xe9 at offset 6 \(line 1\).*"
                                         r"encoding='latin-1' \(--encoding latin-1\).*errors='replace'"):
        prepare_text(str(tmp_path / 'out'), [str(f)])
    assert not (tmp_path / 'out').exists()
    meta = prepare_text(str(tmp_path / 'out'), [str(f)], encoding='latin-1')
    assert meta['source']['encoding'] == 'latin-1'
    assert 'Le café de Noël est fermé.' in decoded(tmp_path / 'out')  # stored as UTF-8 bytes
    assert meta['bytes']['train'] > meta['characters']['train']


def test_invalid_utf8_byte_is_named_by_offset_or_replaced(tmp_path):
    f = tmp_path / 'mixed.txt'
    head = b'line one\nline two\nthird '  # 24 bytes, the bad byte sits on line 3
    f.write_bytes(head + b'\xff' + b' tail\n' + b'x = 1\n' * 200)
    with pytest.raises(ValueError, match=r'byte 0xff at offset 24 \(line 3\): invalid start byte'):
        prepare_text(str(tmp_path / 'out'), [str(f)])
    prepare_text(str(tmp_path / 'out'), [str(f)], errors='replace')
    assert 'third \ufffd tail' in decoded(tmp_path / 'out')


def test_binary_files_are_refused_whatever_errors_says(tmp_path):
    blob = tmp_path / 'weights.bin'
    blob.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    for errors in ('strict', 'replace'):
        with pytest.raises(ValueError, match=r"weights\.bin' is binary, not text: it holds a NUL character"):
            prepare_text(str(tmp_path / 'out'), [str(blob)], errors=errors)
    controls = tmp_path / 'controls.dat'  # no NUL, but one byte in three is a control byte
    controls.write_bytes(b'ab\x01cd\x02' * 500)
    with pytest.raises(ValueError, match=r"controls\.dat' is binary, not text: 1000 of its 3000 characters \(33%\)"):
        prepare_text(str(tmp_path / 'out'), [str(controls)], encoding='latin-1')
    corpus = tmp_path / 'corpus'  # one binary file among text files: named, nothing written
    corpus.mkdir()
    (corpus / 'a.txt').write_text(TEXT_A)
    (corpus / 'b.txt').write_text(TEXT_B)
    (corpus / 'c.pyc').write_bytes(b'\xa7\r\r\n\x00\x00\x00\x00' + TEXT_A.encode())
    with pytest.raises(ValueError, match=r"c\.pyc' is binary"):
        prepare_text(str(tmp_path / 'out'), [str(corpus)], errors='replace')
    assert sorted(os.listdir(tmp_path)) == ['controls.dat', 'corpus', 'weights.bin']  # no output, no temporary
    # text with the control characters text does use (form feed, escape, backspace) passes
    (corpus / 'c.pyc').unlink()
    (corpus / 'log.txt').write_text('\x1b[1mbold\x1b[0m page\x0cbreak, typo\x08\n' * 50)
    prepare_text(str(tmp_path / 'out'), [str(corpus)])


def test_existing_prepared_data_is_not_overwritten(corpus, tmp_path):
    out = tmp_path / 'data'
    split_files = {}
    for split in ('train', 'val', 'test'):
        split_files[split] = tmp_path / f'{split}.txt'
        split_files[split].write_text(f'{split} text\n' * 100)
    prepare_text(str(out), train=str(split_files['train']), val=str(split_files['val']),
                 test=str(split_files['test']))
    (out / 'notes.md').write_text('my notes')
    before = snapshot(out)
    with pytest.raises(FileExistsError, match=r"data/meta\.json' already exists \(and 3 more of its files\); "
                                              r"refusing to overwrite.*force=True \(--force\)"):
        prepare_text(str(out), [str(corpus)], val_fraction=0.3)
    assert snapshot(out) == before
    (out / 'meta.json').unlink()  # any one of the outputs is enough to refuse
    with pytest.raises(FileExistsError, match=r"data/train\.bin' already exists"):
        prepare_text(str(out), [str(corpus)], val_fraction=0.3)
    meta = prepare_text(str(out), [str(corpus)], val_fraction=0.3, force=True)
    assert set(meta['tokens']) == {'train', 'val'}
    # the old test split is gone with the data it belonged to; files that are not outputs stay
    assert sorted(p.name for p in out.iterdir()) == ['meta.json', 'notes.md', 'train.bin', 'val.bin']
    assert set(TokenData.open(str(out)).splits) == {'train', 'val'}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.')]  # no temporary folder left


def test_arguments_are_checked_before_any_work(corpus, tmp_path):
    out = str(tmp_path / 'out')
    cases = [
        (dict(vocab_size=300), r"vocab_size=300 sets the size of a BPE tokenizer .*tokenizer='byte'"),
        (dict(tokenizer='bpe', tokenizer_file=str(corpus / 'tok.json'), vocab_size=300),
         'vocab_size=300 .*a BPE tokenizer loaded from files'),
        (dict(tokenizer='bpe', vocab_size=100), r'vocab_size must be in \[257, 65536\].*got 100'),
        (dict(val_fraction=0.0), r'val_fraction must be in \(0, 1\), got 0.0'),
        (dict(val_fraction=1.5), r'val_fraction must be in \(0, 1\), got 1.5'),
        (dict(max_bytes=1000), 'max_bytes=1000 caps the embedded corpus only'),
        (dict(encoding='klingon'), "unknown text encoding 'klingon'"),
        (dict(errors='surrogateescape'), r"errors must be one of .*got 'surrogateescape'"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            prepare_text(out, [str(corpus)], **kwargs)
    with pytest.raises(ValueError, match='max_bytes must be > 0, got 0'):
        prepare_text(out, max_bytes=0)
    assert not os.path.exists(out)
    prepare_text(out, [str(corpus)], tokenizer='bpe', vocab_size=300, val_fraction=0.3)  # the one right place
    assert TokenData.open(out).tokenizer().vocab_size <= 300


def test_embedded_corpus_leaves_out_files_that_are_not_text(tmp_path, monkeypatch):
    root = tmp_path / 'lib'
    root.mkdir()
    for i in range(4):
        (root / f'mod{i}.py').write_text(TEXT_A)
    (root / 'legacy.py').write_bytes('# coding: latin-1\nname = "Noël"\n'.encode('latin-1'))
    (root / 'blob.py').write_bytes(b'\x00\x01' * 100)
    monkeypatch.setattr(text_module, 'stdlib_files', lambda: (str(root), sorted(os.listdir(root))))
    meta = prepare_text(str(tmp_path / 'out'), val_fraction=0.3)
    assert meta['source']['files'] == 6 and meta['source']['skipped'] == 2
    assert meta['characters']['train'] + meta['characters']['val'] == 4 * len(TEXT_A)
