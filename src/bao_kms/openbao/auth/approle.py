"""AppRole: a role ID and a secret ID, each from its own file, read again for every login.

A secret ID is often short-lived or limited in uses and delivered by an orchestrator that
replaces the file; reading both files at each login is what lets the next login use the new
one without a restart.
"""

from __future__ import annotations

import os
from typing import Any

from .base import OpenBaoRequests
from .credentials import CredentialFile, read_credential, single_value


class AppRoleLogin:
    """``POST auth/<mountPath>/login`` with ``role_id`` and ``secret_id``."""

    name = "approle"
    label = "AppRole"

    def __init__(
        self,
        mount_path: str,
        role_id_file: str | os.PathLike[str],
        secret_id_file: str | os.PathLike[str],
    ) -> None:
        self.path = f"auth/{mount_path}/login"
        self._role_id = CredentialFile(
            "auth.approle.roleIdFile", "AppRole role ID file", os.fspath(role_id_file)
        )
        self._secret_id = CredentialFile(
            "auth.approle.secretIdFile", "AppRole secret ID file", os.fspath(secret_id_file)
        )

    def check(self) -> None:
        self._read()

    def login_request(self, openbao: OpenBaoRequests) -> tuple[str, dict[str, Any]]:
        role_id, secret_id = self._read()
        return self.path, {"role_id": role_id, "secret_id": secret_id}

    def _read(self) -> tuple[str, str]:
        files = (self._role_id, self._secret_id)
        role_id, secret_id = (single_value(f, read_credential(f)[0]) for f in files)
        return role_id, secret_id
