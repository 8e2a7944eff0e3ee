"""Loaded by every Python child process the tests start (PYTHONPATH points here).

Installs voxflow's offline guard: any connection other than loopback (the local Prefect API)
is refused, and its address appended to $VOXFLOW_NETGUARD_LOG so the test can fail on it.
"""

import os

if os.environ.get("VOXFLOW_NETGUARD_LOG"):
    from voxflow import netguard

    class _Log(list):
        def append(self, item: str) -> None:
            with open(os.environ["VOXFLOW_NETGUARD_LOG"], "a") as f:
                f.write(item + "\n")

    netguard.install(allow_loopback=True, record=_Log())
