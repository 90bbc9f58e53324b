"""What the fuzzing campaign (tests/helpers/fuzz_targets.py, bench/fuzz.py) found, each
kept as a test of the input that found it."""

from __future__ import annotations

import pytest

from saslauthpy import config, passwords
from saslauthpy.errors import ConfigError, UnknownScheme


def test_a_config_file_that_is_not_utf8_is_one_line_not_a_traceback(tmp_path):
    """toml target: tomllib raised UnicodeDecodeError through load_toml."""
    path = tmp_path / "saslauthpy.toml"
    path.write_bytes(b"\xf0\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        config.load_toml(str(path))


@pytest.mark.parametrize("value", ["1.5", "7", "true", "{ a = 1 }"])
def test_mechanisms_that_is_not_a_list_is_a_config_error(tmp_path, value):
    """toml target: ``mechanisms = 1.5`` raised TypeError ('float' object is not iterable)
    (fixed on main by the one option loader at the same time)."""
    path = tmp_path / "saslauthpy.toml"
    path.write_text(f"mechanisms = {value}\n")
    with pytest.raises(ConfigError, match="mechanisms"):
        config.load_toml(str(path))


@pytest.mark.parametrize("stored, shown", [
    ("$bbbbbbbbbbbbbbbbbu$", "$?$"),  # what the fuzzer found: the whole value in the message
    ("$pass$word", "$?$"), ("{secret}", "{?}"),
    ("$9$salt$hash", "$9$"), ("{FOO}c2VjcmV0", "{FOO}"), ("$scrypt$ln=16$x$y", "$scrypt$"),
])
def test_an_unknown_scheme_message_never_holds_a_cleartext_value(stored, shown):
    """password_hash target: a cleartext password stored where a hash was expected, and
    looking like ``$id$`` or ``{NAME}``, reached the log through UnknownScheme."""
    with pytest.raises(UnknownScheme) as info:
        passwords.verify(b"pw", stored)
    assert info.value.scheme == shown
    assert passwords.scheme_of(stored) == shown
    if shown in ("$?$", "{?}"):
        assert stored not in str(info.value)
