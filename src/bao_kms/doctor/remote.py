"""The checks that talk to OpenBao, through the provider's own parts (never a second client).

:class:`OpenBaoChecks` builds a real :class:`~bao_kms.provider.Provider` from the config, with
the socket moved to a private temporary directory, and checks through its transport, auth and
Transit client; the round trip then starts that provider and probes it through its socket
exactly as kube-apiserver would. So what ``doctor`` proves is what ``serve`` will do.
"""

from __future__ import annotations

import ipaddress
import shutil
import tempfile
import time
import urllib.parse
from pathlib import Path
from types import TracebackType

import orjson

from ..api.probe import run_probe
from ..config import Config
from ..errors import ConfigError, KmsError, OpenBaoPermissionDenied
from ..keys.profile import key_profile_problems
from ..openbao import TransitClient, Transport
from ..openbao.key_metadata import response_data
from ..provider import Provider
from .capabilities import assess, paths_to_ask
from .checks import Check, Finding, Outcome

#: how long the in-process provider may take to report healthy
HEALTHY_TIMEOUT = 15.0


def _why(error: Exception) -> str:
    # KmsError messages are written to be shown (no secrets, no URLs); anything else is a bug
    # in doctor's own terms, named by type only
    return str(error) if isinstance(error, KmsError) else type(error).__name__


def _is_loopback(address: str) -> bool:
    """Loopback by address, not by spelling: ``127.evil.example`` is a DNS name."""
    host = urllib.parse.urlsplit(address).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _duration(seconds: int) -> str:
    if seconds >= 86400:
        return f"{seconds // 86400}d{seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60}m"
    return f"{seconds // 60}m{seconds % 60}s"


class OpenBaoChecks:
    """One provider's parts, built once for every OpenBao check; a context manager."""

    def __init__(self, config: Config) -> None:
        # short and private: AF_UNIX paths are limited, and nobody else may connect
        self._workdir = Path(tempfile.mkdtemp(prefix="bao-kms-doctor-"))
        # the node's own provider may be serving: its socket and health/metrics ports are
        # taken, so the round trip listens on a private socket and on ports of its own
        server = config.server.model_copy(
            update={
                "socket_path": str(self._workdir / "kms.sock"),
                "socket_group": None,
                "health_address": "127.0.0.1:0",
                "metrics_address": "127.0.0.1:0",
            }
        )
        # the node's provider holds the key registry's lock; the round trip keeps its own
        state = config.state.model_copy(update={"path": None})
        self.config = config.model_copy(update={"server": server, "state": state})
        self.provider: Provider | None = None
        self.build_error: str | None = None
        try:
            self.provider = Provider(self.config)
        except ConfigError as error:
            self.build_error = str(error)

    def __enter__(self) -> OpenBaoChecks:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.provider is not None:
            self.provider.pool.clear()
        shutil.rmtree(self._workdir, ignore_errors=True)

    # --- the checks, in the order doctor runs them -------------------------------------------

    def reachable(self) -> Finding:
        if self.provider is None:
            return Finding(Check.OPENBAO_REACHABLE, Outcome.FAIL, self.build_error or "")
        provider = self.provider
        answers: list[tuple[str, str]] = []
        for address in self.config.openbao.addresses:
            # one transport per address: the provider's fails over and would hide a dead one
            transport = Transport(
                [address],
                provider.transport.auth,
                pool=provider.pool,
                namespace=self.config.openbao.namespace,
                timeout=self.config.openbao.timeout,
            )
            try:
                state = TransitClient(transport, "unused", "unused").health()
            except KmsError as error:
                state = _why(error)
            answers.append((address, state))
        good = [address for address, state in answers if state in ("ok", "standby")]
        summary = "; ".join(f"{address}: {state}" for address, state in answers)
        if not good:
            return Finding(Check.OPENBAO_REACHABLE, Outcome.FAIL, summary)
        if len(good) < len(answers):
            return Finding(
                Check.OPENBAO_REACHABLE,
                Outcome.WARN,
                summary,
                "the provider fails over to the addresses that answer; fix or remove the others",
            )
        # loopback http (a local agent) is a choice the config states; across hosts it
        # sends the token where anyone on the path can read it
        cleartext = [
            address
            for address in good
            if urllib.parse.urlsplit(address).scheme == "http" and not _is_loopback(address)
        ]
        if cleartext:
            return Finding(
                Check.OPENBAO_REACHABLE,
                Outcome.WARN,
                f"{summary}; plain http: the token crosses the network unencrypted",
                "use https:// with `openbao.caFile`",
            )
        return Finding(Check.OPENBAO_REACHABLE, Outcome.PASS, summary)

    def auth(self) -> Finding:
        assert self.provider is not None
        try:
            body = self.provider.transport.request("GET", "auth/token/lookup-self")
            data = response_data(body, "token lookup")
        except OpenBaoPermissionDenied:
            return Finding(
                Check.AUTH,
                Outcome.FAIL,
                "OpenBao refused the token (HTTP 403): it is invalid, expired or revoked, or "
                "lacks the default policy",
            )
        except KmsError as error:
            return Finding(Check.AUTH, Outcome.FAIL, _why(error))
        # never the token or its accessor: only its shape
        listed = data.get("policies")
        policies: list[str] = [str(p) for p in listed] if isinstance(listed, list) else []
        given_ttl = data.get("ttl")
        ttl: int = given_ttl if type(given_ttl) is int else 0
        renewable = data.get("renewable") is True
        kind = "root token" if "root" in policies else f"{len(policies)} policies"
        lifetime = "no expiry" if ttl == 0 else f"ttl {_duration(ttl)}"
        message = f"OpenBao accepts the {self.config.auth.method} credential ({kind}, {lifetime}"
        message += ", renewable)" if renewable else ")"
        if ttl and not renewable and self.config.auth.method == "token":
            return Finding(
                Check.AUTH,
                Outcome.WARN,
                message + f"; it cannot be renewed and expires in {_duration(ttl)}",
                "issue a periodic token (`bao token create -period=24h ...`) or use AppRole",
            )
        return Finding(Check.AUTH, Outcome.PASS, message)

    def capabilities(self) -> Finding:
        assert self.provider is not None
        mount, key = self.config.transit.mount_path, self.config.transit.key_name
        paths = paths_to_ask(mount, key)
        try:
            body = self.provider.transport.request(
                "POST", "sys/capabilities-self", orjson.dumps({"paths": paths})
            )
            data = response_data(body, "capabilities")
        except KmsError as error:
            return Finding(
                Check.TOKEN_CAPABILITIES,
                Outcome.FAIL,
                f"cannot ask OpenBao for the token's capabilities: {_why(error)}",
                "keep OpenBao's default policy on the token (it grants sys/capabilities-self)",
            )
        granted = {
            path: [str(cap) for cap in data[path]]
            for path in paths
            if isinstance(data.get(path), list)
        }
        return assess(granted, mount, key)

    def key_profile(self) -> Finding:
        assert self.provider is not None
        transit = self.provider.probe_transit
        try:
            key = transit.read_key()
            disable_upsert = transit.read_keys_config()
        except KmsError as error:
            return Finding(
                Check.KEY_PROFILE,
                Outcome.FAIL,
                f"cannot read the key or the mount's config/keys: {_why(error)}",
                "check `transit.mountPath` and `transit.keyName`, and the policy",
            )
        problems = key_profile_problems(key, disable_upsert)
        if problems:
            return Finding(
                Check.KEY_PROFILE,
                Outcome.FAIL,
                "Status would report: " + ", ".join(problems),
                "; ".join(f"{reason}: {reason.remedy}" for reason in problems),
            )
        return Finding(
            Check.KEY_PROFILE,
            Outcome.PASS,
            f"aes256-gcm96, version {key.latest_version}, safe profile, disable_upsert=true",
        )

    def round_trip(self, timeout: float = HEALTHY_TIMEOUT) -> Finding:
        assert self.provider is not None
        provider = self.provider
        provider.start()
        try:
            deadline = time.monotonic() + timeout
            health = provider.monitor.health()
            while not health.ok and time.monotonic() < deadline:
                time.sleep(0.05)
                health = provider.monitor.health()
            if not health.ok:
                reasons = ", ".join(health.reasons)
                return Finding(
                    Check.ROUND_TRIP,
                    Outcome.FAIL,
                    f"the provider did not become healthy within {timeout:g}s: {reasons}",
                    "see these Status reasons in docs/troubleshooting.md",
                )
            report = run_probe(provider.server.socket_path)
        finally:
            provider.stop(grace=1.0)
        if not report.ok:
            return Finding(Check.ROUND_TRIP, Outcome.FAIL, report.problem)
        return Finding(
            Check.ROUND_TRIP,
            Outcome.PASS,
            f"Status ok, Encrypt and Decrypt agree on key_id {report.status_key_id}",
        )
