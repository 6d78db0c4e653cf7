"""The kube-apiserver KMS v2 contract as checks: ``bao-kms-provider conformance``.

Drives any KMS v2 plugin the way kube-apiserver does (:mod:`.apiserver` emulates its envelope
use, :mod:`.scenario` runs the phases, :mod:`.tamper` sends what must be refused) and judges
every rule named in :mod:`.checks`; :mod:`.report` holds the outcome.

Importing :mod:`.scenario` or :mod:`.apiserver` needs the ``cryptography`` package (the
``conformance`` extra); :mod:`.checks` and :mod:`.report` do not.
"""
