"""ldap_core_shared's configuration snippets, working: environment variables and a JSON file.

``python examples/ldapapi_config.py`` starts a private slapd, builds the
ConnectionInfo from ``LDAP_*`` variables (``ConnectionInfo.from_env``, and
by hand as the documentation does) and from a JSON file
(``ConnectionInfo.from_dict``, which refuses unknown keys), and connects.
"""

from __future__ import annotations

import json
import os
import tempfile

from geventpool.errors import ConfigurationError
from geventpool.ldap.compat.info import ConnectionInfo
from geventpool.ldap.compat.manager import LDAPConnectionManager
from geventpool.testing.slapd import SERVICE_DN, SERVICE_PW, Slapd


def environment(server: Slapd) -> None:
    os.environ.update({"LDAP_HOST": "127.0.0.1", "LDAP_PORT": str(server.port), "LDAP_BIND_DN": SERVICE_DN,
                       "LDAP_PASSWORD": SERVICE_PW, "LDAP_CA_CERT_PATH": server.ca_file})
    dev_config = ConnectionInfo(
        host=os.getenv("LDAP_HOST", "localhost"),
        port=int(os.getenv("LDAP_PORT", "389")),
        bind_dn=os.getenv("LDAP_BIND_DN"),
        password=os.getenv("LDAP_PASSWORD"),
        pool_size=5,
        max_pool_size=10,
    )
    env_config = ConnectionInfo.from_env(use_tls=True, pool_size=5, max_pool_size=10)  # LDAP_* win
    for label, info in (("environment (by hand)", dev_config), ("environment (from_env)", env_config)):
        manager = LDAPConnectionManager(info)
        result = manager.connect()
        print(f"{label}: connected={result.connected} encryption={result.encryption} {info!r}")
        manager.disconnect()


def json_file(server: Slapd) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "ldap_config.json")
        with open(path, "w") as f:
            json.dump({"ldap": {"host": "127.0.0.1", "port": server.port, "bind_dn": SERVICE_DN,
                                "password": SERVICE_PW, "pool_size": 2}}, f)
        with open(path) as f:
            config_data = json.load(f)
        conn_info = ConnectionInfo.from_dict(config_data["ldap"])
        manager = LDAPConnectionManager(conn_info)
        print(f"json file: connected={manager.connect().connected}; to_dict() shows the password: "
              f"{'password' in conn_info.to_dict()}")
        manager.disconnect()
    try:
        ConnectionInfo.from_dict({"host": "127.0.0.1", "base_dn": "dc=example,dc=com"})
    except ConfigurationError as error:
        print("json file: unknown key refused:", error)
    result = ConnectionInfo(host="", port=0, bind_dn=SERVICE_DN).validate()
    print(f"validate(): valid={result.valid}, {len(result.errors)} problems:", "; ".join(result.errors))


if __name__ == "__main__":
    with Slapd(users=5) as slapd:
        environment(slapd)
        json_file(slapd)
