"""``raftlog bench``: raftlog and etcd measured side by side on this machine.

The engine behind the ``raftlog bench`` verb: it starts a local 3-node raftlog cluster
and (when Debian's ``etcd`` is installed) a local 3-member etcd cluster, drives both
with the same ``wrk`` Lua scripts, interleaves the systems, repeats every workload,
and reports min/median/max figures and ratios as a table, JSON and PNG plots.

Modules: ``procs`` (every child process, stopped on every exit path), ``control``
(small HTTP calls for leaders and health), ``clusters`` (the two clusters), ``wrk``
(Lua scripts and parsing wrk's output), ``workloads`` (the steady-state points and the
leader-change check), ``failover`` (kill -9 of the leader), ``clients`` (the Python
client rows, from ``raftlog.client.load`` when present), ``report`` (statistics, the
table, JSON), ``plots`` (matplotlib, optional) and ``runner`` (the whole run).

May import the shared top of raftlog, ``raftlog.client`` and
``raftlog.cli.local_config``; only ``raftlog.cli`` imports this package.
"""
