import pytest

from audiokit.data.kaldi_files import read_kv_file, write_kv_file
from audiokit.errors import DataDirError
from audiokit.utils.atomic import atomic_write


def test_round_trip_sorted_and_values_with_spaces(tmp_path):
    p = tmp_path / "text"
    write_kv_file(p, {"b": "HELLO WORLD", "a": "X  Y", "B2": ["u1", "u2"]})
    assert p.read_text() == "B2 u1 u2\na X  Y\nb HELLO WORLD\n"
    assert read_kv_file(p) == {"B2": "u1 u2", "a": "X  Y", "b": "HELLO WORLD"}


def test_duplicate_key_names_file_and_line(tmp_path):
    p = tmp_path / "utt2spk"
    p.write_text("u1 s1\n\nu1 s2\n")
    with pytest.raises(DataDirError, match=r"utt2spk:3: duplicate key 'u1'"):
        read_kv_file(p)


def test_empty_value(tmp_path):
    p = tmp_path / "text"
    p.write_text("u1\n")
    with pytest.raises(DataDirError, match="has no value"):
        read_kv_file(p)
    assert read_kv_file(p, allow_empty_value=True) == {"u1": ""}


def test_missing_file(tmp_path):
    with pytest.raises(DataDirError, match="file not found"):
        read_kv_file(tmp_path / "nope")


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    p = tmp_path / "out.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(p) as f:
        f.write("new")
        raise RuntimeError("boom")
    assert p.read_text() == "old"
    assert list(tmp_path.iterdir()) == [p]


def test_atomic_outputs_get_normal_permissions(tmp_path):
    import os

    from audiokit.utils.atomic import atomic_path

    umask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "a.txt") as f:
            f.write("x")
        with atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o644
