"""RunComfy API client: typed requests, job handles with adaptive polling, typed errors.

Never imports discord or storage; the CLI (``python -m client``) is built on the same API.
"""

from client.api import JobHandle, RunComfyClient
from client.polling import PollingPolicy
from client.retry import RetryPolicy
from client.settings import ClientSettings, SettingError

__all__ = [
    "ClientSettings",
    "JobHandle",
    "PollingPolicy",
    "RetryPolicy",
    "RunComfyClient",
    "SettingError",
]
