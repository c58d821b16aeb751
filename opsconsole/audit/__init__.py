"""An append-only, hash-chained JSONL audit log.

``AuditLog`` appends records (write-ahead, thread-safe); ``verify_file`` checks a log's
whole chain and names the first broken line; ``HeadAnchor`` writes the chain's head to
the host's log so a cut tail can be caught (``verify_file(..., heads=...)``). The
chaining rules live in ``chain``.
"""

from opsconsole.audit.head import Head, HeadAnchor
from opsconsole.audit.verify import VerifyReport, verify_file
from opsconsole.audit.writer import AuditLog

__all__ = ["AuditLog", "Head", "HeadAnchor", "VerifyReport", "verify_file"]
