"""A real single-node SLURM cluster on this machine, for slow tests.

:func:`local_slurm_cluster` starts ``munged``, ``slurmctld`` and ``slurmd`` (Debian's
``slurm-wlm`` and ``munge``) with their configuration, state, spool and logs under a test's
directory, waits until the node is idle, points ``SLURM_CONF`` at that configuration while it is
open, and stops every daemon, and every job still running, when it closes. When ``slurmdbd`` and
MariaDB are installed it also starts both (a private database under the same directory), so that
``sacct`` answers: submitit reads job states with ``sacct`` only (it never falls back to
``squeue``); without accounting it still gets results, from its result files.

Usage::

    with local_slurm_cluster(tmp_path) as cluster:
        executor = submitit.AutoExecutor(tmp_path / "jobs", cluster="slurm")
        executor.update_parameters(slurm_partition=cluster.partition)

Needs root (slurmd starts jobs as their owner). Skips the test when a program is missing.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

SLURM_PROGRAMS = (
    "munged",
    "slurmctld",
    "slurmd",
    "sbatch",
    "sinfo",
    "squeue",
    "scancel",
    "scontrol",
)
"""Programs a cluster needs (Debian: ``apt-get install slurm-wlm munge``)."""
ACCOUNTING_PROGRAMS = ("slurmdbd", "mariadbd", "mariadb-install-db", "sacct")
"""Programs ``sacct`` needs (Debian: ``apt-get install slurmdbd mariadb-server``)."""
MARKER = "IH_SLURM_CLUSTER"
"""Environment variable set, to the cluster's directory, in every daemon and every job."""
PARTITION = "debug"
CPUS = 2
CRED_EXPIRE_S = 10
"""Job credential lifetime; also how long a requeued job waits before it may start again."""
MARIADB_OPTIONS = (
    "--no-defaults",
    "--user=root",
    "--innodb-log-file-size=4M",
    "--innodb-buffer-pool-size=16M",
)
"""Options of ``mariadb-install-db`` and ``mariadbd``: a small database, owned by root."""
THROWAWAY_DB = (
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
    "--innodb-flush-method=nosync",
    "--innodb-lock-wait-timeout=900",
    "--bind-address=127.0.0.1",
    "--skip-name-resolve",
)
"""More options of ``mariadbd``: TCP on localhost only, no syncing (it goes with the test)."""
_FIRST_JOB_IDS = itertools.count(1000, 100_000)
"""Each cluster of a process numbers its jobs apart: submitit caches job states by job id."""
_SLURM_VARIABLES = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_")


@dataclass(frozen=True)
class SlurmCluster:
    """A running cluster: its partition, the environment its commands need, its files."""

    partition: str
    env: dict[str, str]
    conf: Path
    root: Path
    accounting: bool
    startup_s: float
    pids: dict[str, int] = field(default_factory=dict)

    def run(self, *command: str, timeout_s: float = 60.0) -> str:
        """Run a SLURM command against this cluster and return its output (raises on failure)."""
        env = {**clean_environ(os.environ), **self.env}
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}"
            )
        return done.stdout

    def job_state(self, job_id: str) -> str:
        """The state ``scontrol`` reports for a job: PENDING, RUNNING, COMPLETED, ..."""
        fields = dict(
            item.split("=", 1)
            for item in self.run("scontrol", "-o", "show", "job", job_id).split()
            if "=" in item
        )
        return fields["JobState"]

    def wait_for_job(self, job_id: str, timeout_s: float = 120.0, until: str = "") -> str:
        """Poll a job until it reaches ``until`` (or, by default, any final state); its state."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.job_state(job_id)
            if state == until or (not until and state not in _UNFINISHED):
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {state} after {timeout_s:.0f} s")
            time.sleep(0.2)


_UNFINISHED = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "SUSPENDED"}


def missing_programs(names: tuple[str, ...] = SLURM_PROGRAMS) -> list[str]:
    """The programs of ``names`` that are not on PATH (nor in /usr/sbin).

    Example:
        >>> missing_programs(("sh", "no-such-program-here"))
        ['no-such-program-here']
    """
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [name for name in names if shutil.which(name, path=path) is None]


def clean_environ(environ: os._Environ[str] | dict[str, str]) -> dict[str, str]:
    """``environ`` without the variables of an enclosing SLURM job (``SLURM_JOB_ID``, ...).

    Example:
        >>> clean_environ({"HOME": "/root", "SLURM_JOB_ID": "7", "SBATCH_PARTITION": "gpu"})
        {'HOME': '/root'}
    """
    return {k: v for k, v in environ.items() if not k.startswith(_SLURM_VARIABLES)}


def slurm_conf_text(
    *,
    host: str,
    ports: dict[str, int],
    dirs: dict[str, Path],
    munge_socket: Path,
    memory_mb: int,
    first_job_id: int = 1,
    accounting: bool = False,
) -> str:
    """The ``slurm.conf`` of a one-node cluster: ``host`` runs the controller and the node
    (``CPUS`` CPUs, ``memory_mb`` of memory), no cgroups, logs and state in ``dirs``.

    Example:
        >>> ports = {"slurmctld": 7001, "slurmd": 7002, "slurmdbd": 7003}
        >>> dirs = {k: Path("/x", k) for k in ("state", "spool", "log", "run")}
        >>> text = slurm_conf_text(host="vm", ports=ports, dirs=dirs,
        ...                        munge_socket=Path("/m.sock"), memory_mb=2048)
        >>> print(text.splitlines()[-2])
        NodeName=vm NodeAddr=127.0.0.1 NodeHostname=vm CPUs=2 RealMemory=2048 State=UNKNOWN
        >>> "AccountingStorageType=accounting_storage/none" in text
        True
    """
    user = pwd.getpwuid(os.geteuid()).pw_name
    if accounting:
        storage = [
            "AccountingStorageType=accounting_storage/slurmdbd",
            "AccountingStorageHost=localhost",
            f"AccountingStoragePort={ports['slurmdbd']}",
            f"AccountingStoragePass={munge_socket}",  # for slurmdbd: the munge socket
        ]
    else:
        storage = ["AccountingStorageType=accounting_storage/none"]
    lines = [
        "ClusterName=ihlocal",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={ports['slurmctld']}",
        f"SlurmdPort={ports['slurmd']}",
        f"SlurmUser={user}",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        f"AuthInfo=socket={munge_socket},cred_expire={CRED_EXPIRE_S}",
        f"StateSaveLocation={dirs['state']}",
        f"SlurmdSpoolDir={dirs['spool']}",
        f"SlurmctldPidFile={dirs['run'] / 'slurmctld.pid'}",
        f"SlurmdPidFile={dirs['run'] / 'slurmd.pid'}",
        f"SlurmctldLogFile={dirs['log'] / 'slurmctld.log'}",
        f"SlurmdLogFile={dirs['log'] / 'slurmd.log'}",
        f"PlugStackConfig={dirs['run'] / 'plugstack.conf'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        *storage,
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "SchedulerType=sched/backfill",
        "SchedulerParameters=sched_interval=1,bf_interval=1",
        "MpiDefault=none",
        "ReturnToService=2",
        "SlurmdParameters=config_overrides",
        "MailProg=/bin/true",
        "KillWait=5",
        "InactiveLimit=0",
        f"FirstJobId={first_job_id}",
        f"NodeName={host} NodeAddr=127.0.0.1 NodeHostname={host} CPUs={CPUS} "
        f"RealMemory={memory_mb} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP",
    ]
    return "\n".join(lines) + "\n"


def cluster_processes(root: Path | str) -> list[int]:
    """Ids of the processes (daemons, job steps, jobs) started for the cluster at ``root``:
    those whose environment has ``MARKER=root``. This process and its parents are never listed.

    Example:
        >>> cluster_processes("/no/such/cluster")
        []
    """
    needle = f"{MARKER}={root}\0".encode()
    spared = {os.getpid(), os.getppid()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in spared:
            continue
        with suppress(OSError):
            if needle in b"\0" + (entry / "environ").read_bytes():
                found.append(int(entry.name))
    return found


@contextmanager
def local_slurm_cluster(
    tmp_path: Path | str, *, accounting: bool | None = None, timeout_s: float = 60.0
) -> Iterator[SlurmCluster]:
    """Start a one-node SLURM cluster under ``tmp_path``/slurm; stop it and its jobs on exit.

    While open, ``os.environ`` has the cluster's ``env`` (``SLURM_CONF``) and none of an
    enclosing job's ``SLURM_*`` variables; it is restored on exit. ``accounting``: start
    slurmdbd and MariaDB so that ``sacct`` works (default: when they are installed). Skips the
    test when a program is missing or this is not root; raises if a daemon fails to start.

    Example (in a slow test; ``tests/runs/test_slurm_cluster.py`` runs it)::

        with local_slurm_cluster(tmp_path) as cluster:
            print(cluster.run("sinfo", "-h", "-N", "-o", "%t"))  # idle
    """
    missing = missing_programs()
    if missing:
        pytest.skip(
            f"SLURM not installed (no {', '.join(missing)}): apt-get install slurm-wlm munge"
        )
    if os.geteuid() != 0:
        pytest.skip("a local SLURM cluster needs root (slurmd starts jobs as their owner)")
    missing = missing_programs(ACCOUNTING_PROGRAMS)
    if accounting and missing:
        pytest.skip(f"SLURM accounting not installed (no {', '.join(missing)})")
    accounting = not missing if accounting is None else accounting
    started = time.monotonic()
    saved = dict(os.environ)
    daemons = _Daemons(Path(tmp_path, "slurm").resolve(), timeout_s)
    try:
        conf, munge_socket = daemons.root / "slurm.conf", daemons.runtime / "munge.sock"
        ports = dict(zip(("slurmctld", "slurmd", "slurmdbd", "mysql"), _free_ports(4), strict=True))
        run = daemons.dirs["run"]
        key, log = daemons.munge_key(), daemons.dirs["log"] / "munged.log"
        daemons.start("munged", "-F", f"--socket={munge_socket}", f"--key-file={key}",
                      f"--pid-file={run / 'munged.pid'}", f"--seed-file={run / 'munged.seed'}",
                      f"--log-file={log}")  # fmt: skip
        daemons.wait(munge_socket.exists, "munged to create its socket")
        host = socket.gethostname().split(".")[0]
        conf.write_text(
            slurm_conf_text(
                host=host,
                ports=ports,
                dirs=daemons.dirs,
                munge_socket=munge_socket,
                memory_mb=_memory_mb(),
                first_job_id=next(_FIRST_JOB_IDS),
                accounting=accounting,
            )
        )
        (run / "plugstack.conf").write_text("")
        if accounting:
            daemons.start_accounting(ports, munge_socket)
        daemons.start("slurmctld", "-D")
        daemons.start("slurmd", "-D")
        os.environ.clear()
        os.environ.update({**clean_environ(saved), **daemons.env})
        pids = {name: proc.pid for name, proc in daemons.procs.items()}
        cluster = SlurmCluster(PARTITION, daemons.env, conf, daemons.root, accounting, 0.0, pids)
        daemons.wait(lambda: _node_state(cluster) == "idle", "the node to be idle")
        yield replace(cluster, startup_s=time.monotonic() - started)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        daemons.stop()


class _Daemons:
    """The daemons of one cluster, started with its environment, logging into its directory."""

    def __init__(self, root: Path, timeout_s: float) -> None:
        self.root, self.timeout_s = root, timeout_s
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)
        # sockets go to a short directory (108 bytes at most), searchable by all (munged wants it)
        self.runtime = Path(tempfile.mkdtemp(prefix="ih-slurm-"))
        self.runtime.chmod(0o755)
        spool = root / "spool"
        if len(str(spool)) > 60:  # slurmd makes a socket per job step in it: <host>_<job>.<step>
            spool = self.runtime / "spool"
        self.dirs = {name: root / name for name in ("state", "log", "run", "db")} | {"spool": spool}
        for path in self.dirs.values():
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(mode=0o700)
        self.env = {"SLURM_CONF": str(root / "slurm.conf"), MARKER: str(root)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def munge_key(self) -> Path:
        """The cluster's munge key: 1 KiB of random bytes, readable by root only."""
        key = self.root / "munge.key"
        if not key.exists():
            with os.fdopen(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400), "wb") as f:
                f.write(os.urandom(1024))
        return key

    def start(self, *command: str) -> None:
        with (self.dirs["log"] / f"{command[0]}.out").open("ab") as log:
            self.procs[command[0]] = subprocess.Popen(
                command, env={**clean_environ(os.environ), **self.env}, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def wait(self, ready: Callable[[], bool], what: str) -> None:
        """Wait until ``ready()``; raise with the logs if a daemon exits or time runs out."""
        deadline = time.monotonic() + self.timeout_s
        while not ready():
            dead = [name for name, proc in self.procs.items() if proc.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = [
                    f"\n--- {p.name}\n{_tail(p, 1500)}" for p in sorted(self.dirs["log"].iterdir())
                ]
                why = f"{', '.join(dead)} exited" if dead else f"timed out ({self.timeout_s:.0f} s)"
                raise RuntimeError(f"waiting for {what}: {why}{''.join(logs)}")
            time.sleep(0.1)

    def start_accounting(self, ports: dict[str, int], munge_socket: Path) -> None:
        """A private MariaDB (root without password, TCP on 127.0.0.1) and slurmdbd on it."""
        data, log = self.dirs["db"] / "data", self.dirs["log"] / "mariadbd.log"
        install = ["mariadb-install-db", *MARIADB_OPTIONS, f"--datadir={data}", "--skip-test-db"]
        install.append("--auth-root-authentication-method=normal")  # root: no password
        subprocess.run(
            install, cwd=self.root, check=True, capture_output=True, timeout=self.timeout_s
        )
        pid = self.dirs["run"] / "mariadbd.pid"
        self.start("mariadbd", *MARIADB_OPTIONS, *THROWAWAY_DB, f"--datadir={data}",
                   f"--port={ports['mysql']}", f"--socket={self.runtime / 'mysql.sock'}",
                   f"--pid-file={pid}", f"--log-error={log}")  # fmt: skip
        self.wait(lambda: "ready for connections" in _tail(log), "MariaDB")
        dbd_conf = self.root / "slurmdbd.conf"  # slurmdbd reads it next to SLURM_CONF; mode 600
        dbd_conf.touch(mode=0o600)
        dbd_log = self.dirs["log"] / "slurmdbd.log"
        dbd_conf.write_text(
            f"AuthType=auth/munge\nAuthInfo=socket={munge_socket}\n"
            f"DbdHost=localhost\nDbdAddr=127.0.0.1\nDbdPort={ports['slurmdbd']}\n"
            f"SlurmUser={pwd.getpwuid(os.geteuid()).pw_name}\n"
            f"LogFile={dbd_log}\nPidFile={self.dirs['run'] / 'slurmdbd.pid'}\n"
            f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\n"
            f"StoragePort={ports['mysql']}\nStorageUser=root\nStorageLoc=slurm_acct_db\n"
        )
        self.start("slurmdbd", "-D")
        self.wait(lambda: " started" in _tail(dbd_log), "slurmdbd")

    def stop(self) -> None:
        """Cancel the jobs, stop the daemons (last started first), then kill what is left."""
        ctld = self.procs.get("slurmctld")
        env = {**clean_environ(os.environ), **self.env}
        queue = ["squeue", "-h", "-o", "%A"]
        with suppress(subprocess.SubprocessError, OSError):
            jobs = _output(queue, env) if ctld and ctld.poll() is None else []
            if jobs:
                subprocess.run(["scancel", *jobs], env=env, capture_output=True, timeout=10)
            deadline = time.monotonic() + 15  # KillWait=5: SIGTERM, SIGKILL 5 s later
            while jobs and time.monotonic() < deadline:
                time.sleep(0.2)
                jobs = _output([*queue, "-t", "R,CG"], env)
        for proc in reversed(self.procs.values()):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for _ in range(50):  # job steps and jobs that outlived slurmd
            left = cluster_processes(self.root)
            if not left:
                break
            for pid in left:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        shutil.rmtree(self.runtime, ignore_errors=True)


def _output(command: list[str], env: dict[str, str]) -> list[str]:
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=10)
    return run.stdout.split()


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20


def _node_state(cluster: SlurmCluster) -> str:
    try:
        return cluster.run("sinfo", "-h", "-N", "-o", "%t", timeout_s=10).strip()
    except (RuntimeError, subprocess.TimeoutExpired):
        return ""


def _tail(path: Path, size: int = 4000) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - size))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""
