from __future__ import annotations

import pytest

from ml_assets.lib.files import write_atomically


def test_a_write_replaces_the_file_whole_and_a_failed_one_leaves_it_untouched(tmp_path):
    target = tmp_path / "deep" / "config.json"
    assert write_atomically(target, "old\n") == target
    write_atomically(target, "new\n")
    assert target.read_text() == "new\n"
    with pytest.raises(UnicodeEncodeError):
        write_atomically(target, "half \ud800 written")  # fails while writing
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["config.json"]  # no leftovers
