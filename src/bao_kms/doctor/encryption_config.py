"""Does kube-apiserver's EncryptionConfiguration point at this provider, and in which phase?

Reads the file the apiserver reads (``--encryption-provider-config``) and finds the kms
provider named as ``identity.providerName``. A wrong endpoint or API version fails: the
apiserver would dial nothing, or another provider. ``identity`` first (phase 1, read) or still
listed (phase 2, write) is a warning: right during a migration, wrong when it is over.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ..api.client import InvalidSocketEndpoint, socket_path
from ..config import Config
from .checks import Check, Finding, Outcome

API_VERSION = "apiserver.config.k8s.io/v1"


def _load(path: str | os.PathLike[str]) -> Any:
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ValueError(f"cannot read {path}: {reason}") from None
    except yaml.YAMLError:
        raise ValueError(f"{path} is not valid YAML") from None


def _provider_kind(entry: Any) -> str:
    return next(iter(entry)) if isinstance(entry, dict) and len(entry) == 1 else "?"


def check_encryption_config(path: str | os.PathLike[str], config: Config) -> Finding:
    try:
        document = _load(path)
    except ValueError as error:
        return Finding(Check.ENCRYPTION_CONFIG, Outcome.FAIL, str(error))
    if (
        not isinstance(document, dict)
        or document.get("kind") != "EncryptionConfiguration"
        or document.get("apiVersion") != API_VERSION
        or not isinstance(document.get("resources"), list)
    ):
        return Finding(
            Check.ENCRYPTION_CONFIG,
            Outcome.FAIL,
            f"{path} is not an {API_VERSION} EncryptionConfiguration with resources",
        )
    name = config.identity.provider_name
    expected = socket_path(config.server.socket_path)
    problems: list[str] = []
    warnings: list[str] = []
    covered: list[str] = []
    for index, rule in enumerate(document["resources"]):
        providers = rule.get("providers") if isinstance(rule, dict) else None
        if not isinstance(providers, list):
            problems.append(f"resources[{index}] has no providers list")
            continue
        kinds = [_provider_kind(entry) for entry in providers]
        ours = [
            position
            for position, entry in enumerate(providers)
            if kinds[position] == "kms"
            and isinstance(entry["kms"], dict)
            and entry["kms"].get("name") == name
        ]
        if not ours:
            continue
        listed = rule.get("resources")
        what = ", ".join(map(str, listed)) if isinstance(listed, list) else f"rule {index}"
        covered.append(what)
        kms = providers[ours[0]]["kms"]
        if kms.get("apiVersion") != "v2":
            problems.append(f"{what}: the kms provider is not apiVersion v2")
        endpoint = str(kms.get("endpoint", ""))
        try:
            dialled = socket_path(endpoint) if endpoint.startswith("unix://") else None
        except InvalidSocketEndpoint:
            dialled = None
        if dialled != expected:
            problems.append(
                f"{what}: endpoint {endpoint or '(none)'} is not unix://{expected}, the "
                "config's server.socketPath"
            )
        if kinds[0] == "identity":
            warnings.append(
                f"{what}: identity comes first, so new writes are NOT encrypted (phase 1 of "
                "the migration)"
            )
        elif "identity" in kinds:
            warnings.append(
                f"{what}: identity is still listed; remove it once every object has been "
                "rewritten (phase 3)"
            )
    if not covered:
        problems.append(
            f"{path} has no kms provider named as this config's identity.providerName "
            "(the names must be equal)"
        )
    if problems:
        return Finding(Check.ENCRYPTION_CONFIG, Outcome.FAIL, "; ".join(problems + warnings))
    if warnings:
        return Finding(Check.ENCRYPTION_CONFIG, Outcome.WARN, "; ".join(warnings))
    return Finding(
        Check.ENCRYPTION_CONFIG,
        Outcome.PASS,
        f"this provider encrypts {'; '.join(covered)} through unix://{expected}",
    )
