"""Text preparation: byte-level and BPE tokenizers, WikiText layout, the embedded corpus, bad input."""
import json
import os

import numpy as np
import pytest

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
        prepare_text(str(out), [str(empty)])
    (tmp_path / 'emptydir').mkdir()
    with pytest.raises(ValueError, match='holds no files'):
        prepare_text(str(out), [str(tmp_path / 'emptydir')])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_tokenizer_file_that_does_not_parse(corpus, tmp_path):
    out = tmp_path / 'data'
    prepare_text(str(out), [str(corpus)], val_fraction=0.3)
    before = (out / 'train.bin').read_bytes()
    bad = tmp_path / 'tokenizer.json'
    bad.write_text('{"version": "1.0", "model": ')
    with pytest.raises(ValueError, match='does not parse'):
        prepare_text(str(out), [str(corpus)], tokenizer='bpe', tokenizer_file=str(bad))
    vocab, merges = tmp_path / 'vocab.json', tmp_path / 'merges.txt'
    vocab.write_text('not json')
    merges.write_text('#version: 0.2\n')
    with pytest.raises(ValueError, match='do not parse'):
        prepare_text(str(out), [str(corpus)], tokenizer='bpe', vocab_file=str(vocab), merges_file=str(merges))
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
