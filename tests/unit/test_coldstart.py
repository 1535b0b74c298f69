"""bench/coldstart.py's pure parts: reading -X importtime's output, and sizing a layer."""

import sysconfig
from pathlib import Path

from bench.coldstart import foreign_binaries, parse_importtime, subtree, tree_bytes

# As -X importtime writes it: start-up imports first, then the handler after everything it imported.
IMPORTTIME = """import time: self [us] | cumulative | imported package
import time:       150 |        150 |   _io
import time:       600 |        750 | io
import time:        30 |         30 |     _typing
import time:      2000 |       2030 |   typing
import time:       400 |        400 |   swarmwarden
import time:      1000 |       3430 | app
"""


def test_subtree_is_what_the_handler_imported_after_start_up() -> None:
    rows = parse_importtime(IMPORTTIME)

    assert rows[0] == ("_io", 150, 150, 1)
    assert subtree(rows, "app") == (3430, [("_typing", 30, 30), ("typing", 2000, 2030), ("swarmwarden", 400, 400)])


def test_tree_bytes_counts_regular_files_per_top_level_entry(tmp_path: Path) -> None:
    (tmp_path / "botocore" / "data").mkdir(parents=True)
    (tmp_path / "botocore" / "data" / "endpoints.json").write_bytes(b"x" * 300)
    (tmp_path / "botocore" / "__init__.pyc").write_bytes(b"x" * 20)
    (tmp_path / "six.pyc").write_bytes(b"x" * 5)
    (tmp_path / "link").symlink_to(tmp_path / "six.pyc")

    assert tree_bytes(tmp_path) == (325, {"botocore": 320, "six.pyc": 5})


def test_foreign_binaries_are_extension_modules_built_for_another_cpu(tmp_path: Path) -> None:
    own = sysconfig.get_config_var("EXT_SUFFIX")
    other = ".cpython-313-x86_64-linux-gnu.so" if "aarch64" in own else ".cpython-313-aarch64-linux-gnu.so"
    (tmp_path / f"_native{own}").touch()
    (tmp_path / "_stable.abi3.so").touch()
    assert foreign_binaries(tmp_path) is False

    (tmp_path / f"_other{other}").touch()
    assert foreign_binaries(tmp_path) is True
