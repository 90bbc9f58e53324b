"""Known hashes of one password, made by the reference tools (Dovecot's ``doveadm pw``,
``mkpasswd``, OpenLDAP's ``slappasswd``, argon2-cffi), checked with ``passwords.verify``:
each verifies the password and refuses a wrong one.  The vectors are fixed text, so this
runs without any of the tools installed."""

from __future__ import annotations

import pytest

from saslauthpy import passwords
from saslauthpy.errors import UnknownScheme

PASSWORD = b"Tr0ub4dor&3"
WRONG = (b"Tr0ub4dor&4", b"tr0ub4dor&3 ")  # a changed last byte; case and a blank

VECTORS = {
    # doveadm pw -s SCHEME
    "SHA512-CRYPT": "{SHA512-CRYPT}$6$0LRVmD.KA5xSlibF$ShddaRy8dbbKyRURoHDeu1N5ivVoD0DxsUvDGvCj"
                    "G0TS1nV8DIJ5.kcdbTAJ6mwYuQ98rXJtwCcdrPGDAwBve1",
    "SHA256-CRYPT": "{SHA256-CRYPT}$5$oEmDjlWAmACnDoHG$OIu78hsogCTSpcK13yi6PtI8afEInRgM9y2d5qkf"
                    "Kp9",
    "MD5-CRYPT": "{MD5-CRYPT}$1$N.KE6MEq$Cvc3PnyD/WMhJmd8hvDN9.",
    "BLF-CRYPT": "{BLF-CRYPT}$2y$05$UXNQA1FWTqzG7nGwJPPtiOgnWxnX.2tMj4F5IihAI6F0X8IecZZ5K",
    "SSHA512": "{SSHA512}kKhkJvU5QcHcvkz/R3C4WAihuBAKeCDUr3+vbKGvBX1e8EG+ePDr2fBh4jxzkoiAWUwYyAt5"
               "4McX37jVSCwXpYfeI0A=",
    "SSHA256": "{SSHA256}AwG/TfwidQiDp3WLXjGu2LMHtEeD9yi/1t+hld9YWsugbho+",
    "SSHA": "{SSHA}Fn7FXGjjGT8kUQ4ONTDcNMHQcFRLlc2/",
    "SMD5": "{SMD5}w8en3cFG2FogklE331wNZN7qX8I=",
    "SHA512": "{SHA512}xyu2IccEDPS2R0BjqaeXJpDiUvNa2+fPr/Wx7iMW7+c4LnI9QeATor+8M8MAfFDFhH0hqInM6"
              "DhTbqxyeAjeQA==",
    "SHA256": "{SHA256}SEhuFRToQjRv9AWx5F9EBZroJhnyMG+Z0JQNyzhukfc=",
    "SHA": "{SHA}h0Vy56WuaklGamrFeLmK26eMaqY=",
    "SHA1": "{SHA1}h0Vy56WuaklGamrFeLmK26eMaqY=",
    "PLAIN-MD5": "{PLAIN-MD5}4ece57a61323b52ccffdbef021956754",
    "LDAP-MD5": "{LDAP-MD5}Ts5XphMjtSzP/b7wIZVnVA==",
    "MD5 (as MD5-CRYPT)": "{MD5}$1$bXD/6NDp$R4BdM24ZzScILA5fGBQxc.",
    "PBKDF2": "{PBKDF2}$1$brc2VfxdRL/Oql6v$5000$9a71a2ae2f95f0b4efef9572d3fa613fcb70f974",
    "ARGON2I": "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$5TF/p7+RCh2WO6hCumki/g$Iz+S1Y205/Dn8MB1D"
               "jfZ4Yc1uS+V6/Q/1Q0pUspzK+g",
    "ARGON2ID": "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$PxgDu4TvtnA+BAyWj4eAtw$ajdbbmVcs9ONLV"
                "kYHEoudqWJBS6mtirAdLAIeCqARRY",
    "PLAIN": "{PLAIN}Tr0ub4dor&3",
    "CLEARTEXT": "{CLEARTEXT}Tr0ub4dor&3",
    "SSHA.HEX": "{SSHA.HEX}725c89acb79a3af5b8c2f775fda15bfe0fb242d34002fa73",
    "SHA256.HEX": "{SHA256.HEX}48486e1514e842346ff405b1e45f44059ae82619f2306f99d0940dcb386e91f7",
    # slappasswd -h '{SCHEME}'
    "slappasswd SSHA": "{SSHA}0LvfjFTHZqd8xfwtMy0Go1vjA1rrnrqj",
    "slappasswd MD5": "{MD5}Ts5XphMjtSzP/b7wIZVnVA==",
    "slappasswd SMD5": "{SMD5}3fCTElUQO/3nDVw0swlny44Ftzg=",
    # mkpasswd -m METHOD (bare crypt(3) strings, as /etc/shadow holds them)
    "yescrypt": "$y$j9T$NzlHL0bpm7VC6ZZx0NOhs/$zk322Qh7MJqrepOihHkdiqHY61QOzG7H9IWgB5NWvE/",
    "gost-yescrypt": "$gy$j9T$s1bETiqL1c.J3FOhYloRV/$MU06JmljprjRCWhUFHNYATFdquZUE7I8CCrmhNcKy9.",
    "scrypt": "$7$CU..../....tzCQZL59Kba9xW/LLBQm6.$G0LWqdN00qY1C/PDblhiU38RRxPfnyb0kHZuy4hWo79",
    "bcrypt": "$2b$05$ZI40nEP1X9iF7GkkigeR2OZmiPSmHJqZZFiJmzVUmh.nZzvHf.iRq",
    "sha512crypt": "$6$bAqBaRD0etVyLgCM$vz6advoQyBEec3DJx42B6EfXT0J8ccChPwstZIBt2TSwID3mozTrqfP"
                   ".NWThFyT3PPtWHEz4zQ5g.QgcKGbNj.",
    "des": ".8urj1Xfhb/y2",
    "bsdicrypt": "_J9..k4MFlVGYbXyzKSc",
    "sunmd5": "$md5,rounds=75059$JhME.Ah.$$7YW/FviG/HY66m6aOpBch0",
    "nt": "$3$$24d9c99595080b241b3b4eb0cba8d8f4",
    # argon2-cffi, bare
    "argon2id (bare)": "$argon2id$v=19$m=1024,t=1,p=1$iH8kRjlEx7MT4alj4PumCw$vmg4xVS/YXuGZWoCxK"
                       "fLjDuCWh/yVdQrEeEn2z1764A",
}

# DES compares only the first 8 bytes of a password: its wrong ones must differ there.
SHORT = {"des": (b"Tr0ub4dX", b"tr0ub4dor&3")}


def needs(name: str, stored: str) -> None:
    """Skip a vector whose library is not importable (argon2-cffi is an extra)."""
    if "argon2" in stored:
        pytest.importorskip("argon2")


@pytest.mark.parametrize("name", list(VECTORS))
def test_reference_hash_verifies_its_password(name):
    needs(name, VECTORS[name])
    assert passwords.verify(PASSWORD, VECTORS[name]) is True


@pytest.mark.parametrize("name", list(VECTORS))
def test_reference_hash_refuses_wrong_passwords(name):
    stored = VECTORS[name]
    needs(name, stored)
    wrong = SHORT.get(name, WRONG)
    assert [passwords.verify(w, stored) for w in wrong] == [False] * len(wrong)


def test_des_uses_only_eight_bytes_as_crypt3_does():
    # The reason SHORT exists: this is crypt(3)'s DES, not a bug of ours.
    assert passwords.verify(b"Tr0ub4doXYZ", VECTORS["des"]) is True


@pytest.mark.parametrize("name", ["SSHA", "SHA512-CRYPT", "PLAIN-MD5"])
def test_scheme_names_are_case_insensitive(name):
    stored = VECTORS[name]
    prefix, _, rest = stored.partition("}")
    assert passwords.verify(PASSWORD, prefix.lower() + "}" + rest) is True


@pytest.mark.parametrize("stored", ["!" + VECTORS["sha512crypt"], "*", "!", ""])
def test_locked_values_never_verify(stored):
    assert passwords.verify(PASSWORD, stored) is False


def test_a_value_without_a_scheme_needs_a_default():
    with pytest.raises(UnknownScheme):
        passwords.verify(PASSWORD, "Tr0ub4dor&3")
    assert passwords.verify(PASSWORD, "Tr0ub4dor&3", default_scheme="PLAIN") is True
    assert passwords.verify(PASSWORD, "4ece57a61323b52ccffdbef021956754",
                            default_scheme="PLAIN-MD5") is True


def test_an_unknown_prefix_is_refused_without_showing_the_value():
    with pytest.raises(UnknownScheme) as info:
        passwords.verify(PASSWORD, "{Tr0ub4dor&3}")
    assert "Tr0ub4dor" not in str(info.value)


@pytest.mark.parametrize("stored", [
    "{SSHA}not*base64", "{SHA256}aGVsbG8=", "{PBKDF2}$1$salt$0$" + "0" * 40, "{SSHA.xyz}abc",
])
def test_malformed_values_of_known_schemes_are_false_not_errors(stored):
    try:
        assert passwords.verify(PASSWORD, stored) is False
    except UnknownScheme:
        assert stored.startswith("{SSHA.xyz}")  # an unknown encoding names no scheme

