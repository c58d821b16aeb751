"""An append-only, hash-chained JSONL audit log.

``AuditLog`` appends records (write-ahead, thread-safe); ``verify_file`` checks a log's
whole chain and names the first broken line. The chaining rules live in ``chain``.
"""

from opsconsole.audit.verify import VerifyReport, verify_file
from opsconsole.audit.writer import AuditLog

__all__ = ["AuditLog", "VerifyReport", "verify_file"]
