"""saslauthpy-admin reads /etc/default/saslauthd as systemd's EnvironmentFile= does."""

from __future__ import annotations

from saslauthpy.cli.admin.hostconfig import read_environment_file


def test_environment_file_values(tmp_path):
    path = tmp_path / "saslauthd"
    path.write_text('# Debian\'s file\n; also a comment\nMECHANISMS="sasldb pam"\n'
                    "MECH_OPTIONS=''\nTHREADS=5\nexport OPTIONS=\"-c -m /var/run/saslauthd\"\n"
                    'ESCAPED="a\\"b"\nnot an assignment\n')
    assert read_environment_file(str(path)) == {
        "MECHANISMS": "sasldb pam", "MECH_OPTIONS": "", "THREADS": "5",
        "OPTIONS": "-c -m /var/run/saslauthd", "ESCAPED": 'a"b'}
