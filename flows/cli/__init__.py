"""The ``voxflow`` command and its local machinery: the argument parser (:mod:`~flows.cli.main`),
what each command does (:mod:`~flows.cli.commands`), the local Prefect server voxflow starts and
reuses (:mod:`~flows.cli.server`, its process in :mod:`~flows.cli.server_process`), the runner
that keeps models loaded between commands (:mod:`~flows.cli.runner`, its process in
:mod:`~flows.cli.runner_process`), and the records both leave in a Prefect home
(:mod:`~flows.cli.home`, :mod:`~flows.cli.processes`).

Imports run one way: main -> commands -> runner -> server -> home, processes. The two
processes import what they serve, and nothing imports them; they are started with ``-m``.
"""
