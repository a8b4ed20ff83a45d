"""The real local stack: Kafka (KRaft, jars from Maven Central) and Redis as background processes.

No Docker. `stack_up` is idempotent and returns only when both services answer; `make run`,
the integration tests and CI all go through it. From a shell: `leadflow stack up|down|status`
(or `python -m ops.stack ...`). The services outlive the process that started them; they are
found again, and stopped, by the pid files in the state dir.

    from ops.stack import StackConfig, stack_up, stack_down
    status = stack_up(StackConfig.from_env())
    status.kafka.url   # 'kafka://127.0.0.1:9092'
    stack_down()
"""
from __future__ import annotations

from ops.stack.config import StackConfig, find_repo_root
from ops.stack.errors import StackError
from ops.stack.manager import StackStatus, stack_down, stack_status, stack_up
from ops.stack.service import ServiceStatus

__all__ = [
    "ServiceStatus",
    "StackConfig",
    "StackError",
    "StackStatus",
    "find_repo_root",
    "stack_down",
    "stack_status",
    "stack_up",
]
