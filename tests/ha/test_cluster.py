"""The engine on a real 3-primary / 3-replica Valkey Cluster: scripts with per-task keys built
inside Lua, pipelines spanning slots, dependencies across primaries, inspect and admin."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import pytest
from redis.exceptions import MovedError

from engine import admin, doctor, explain, inspect, lua, ops
from engine.cli import cli, run
from engine.client import AsyncClient, Client
from engine.errors import ReadOnlyError
from engine.task import Task, TaskState
from tests.ha import driver
from tests.ha.util import PASSWORD, acl_line, spread_queues
from tests.servers import ClusterSet, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSet]:
    """This module's cluster also loads the ``docs/acl`` users (the default user stays open)."""
    aclfile = tmp_path_factory.mktemp("cluster-acl") / "users.acl"
    aclfile.write_text(
        "\n".join(
            ["user default on nopass ~* &* +@all", acl_line("worker.acl"), acl_line("console-readonly.acl")]
        )
        + "\n"
    )
    c = ClusterSet(extra_args=["--aclfile", str(aclfile)]).start()
    yield c
    c.cleanup()


@pytest.fixture
def client(fresh_cluster: ClusterSet) -> Iterator[Client]:
    c = Client(fresh_cluster.url)
    yield c
    c.close()


def test_queues_spread_across_primaries_and_tasks_live_there(
    fresh_cluster: ClusterSet, client: Client
) -> None:
    queues = spread_queues(fresh_cluster)
    tasks = [Task(type="job", payload={"n": i}, queue=q) for q in queues for i in range(5)]
    results = client.enqueue_many(tasks)  # one pipeline: SADD + one EVALSHA per queue, 4 slots
    assert [r.status for r in results] == ["new"] * 15
    owners = {}
    any_node = fresh_cluster.client(fresh_cluster.primary_ports()[0])
    for q in queues:
        qk = client.settings.keyspace.queue(q)
        slot = int(any_node.execute_command("CLUSTER", "KEYSLOT", qk.pending))
        # the per-task keys built inside Lua from ARGV[1] share the queue's slot
        assert int(any_node.execute_command("CLUSTER", "KEYSLOT", qk.task("x"))) == slot
        owners[q] = fresh_cluster.node_for_slot(slot)
    any_node.close()
    assert len(set(owners.values())) == 3, owners
    for r in results:
        qk = client.settings.keyspace.queue(r.queue)
        for port in fresh_cluster.primary_ports():
            direct = fresh_cluster.client(port)
            if port == owners[r.queue]:
                assert direct.hget(qk.task(r.id), "state") == "pending"
                assert direct.zscore(qk.pending, r.id) is not None
            else:
                with pytest.raises(MovedError, match=f":{owners[r.queue]}$"):  # "MOVED <slot> <owner>"
                    direct.exists(qk.task(r.id))
            direct.close()
    summaries = {s.name: s for s in client.call(inspect.queues)}
    assert {q: summaries[q].count(TaskState.PENDING) for q in queues} == {q: 5 for q in queues}


def test_lifecycle_dequeue_ack_retry_dead_requeue(fresh_cluster: ClusterSet, client: Client) -> None:
    q = spread_queues(fresh_cluster, 2)[1]
    ids = [client.enqueue("job", {"i": i}, queue=q, max_retry=1).id for i in range(4)]
    leased = client.run(driver.dequeue(client.settings, q, n=4))
    assert sorted(t.id for t in leased) == sorted(ids)
    assert client.call(admin.count, q, TaskState.ACTIVE) == 4
    assert client.run(driver.ack(client.settings, leased[:2])) == []
    assert client.run(driver.fail(client.settings, leased[2], "boom", "retry")) == "retry"
    assert client.run(driver.fail(client.settings, leased[3], "fatal", "permanent")) == "dead"
    # the retry is due at once: the next dequeue promotes it, and its second failure buries it
    again = client.run(driver.dequeue(client.settings, q, n=4))
    assert [t.id for t in again] == [leased[2].id] and again[0].attempt == 2
    assert client.run(driver.fail(client.settings, again[0], "boom again", "retry")) == "dead"
    summary = client.call(inspect.queue, q)
    assert summary is not None
    assert (summary.count("completed"), summary.count("dead"), summary.count("active")) == (2, 2, 0)
    dead = client.call(inspect.page, q, TaskState.DEAD)
    assert {t.id for t in dead.tasks} == {leased[2].id, leased[3].id}
    info = client.get_task(leased[3].id)  # located by probing every queue (EXISTS on each slot)
    assert info is not None and info.state == TaskState.DEAD and info.last_error == "fatal"
    assert [h.state for h in info.history][:1] == ["dead"]
    assert client.call(admin.requeue_all, q) == 2
    assert client.call(admin.count, q, TaskState.PENDING) == 2
    assert client.call(admin.flush, q, TaskState.COMPLETED) == 2
    assert client.call(admin.count, q, TaskState.COMPLETED) == 0


def test_dependencies_across_primaries(fresh_cluster: ClusterSet, client: Client) -> None:
    qa, qb, qc = spread_queues(fresh_cluster, 3)
    parent = client.enqueue("parent", None, queue=qa)
    doomed = client.enqueue("doomed", None, queue=qc, max_retry=0)
    child = client.enqueue("child", None, queue=qb, depends_on=[parent, doomed.id])
    assert child.state == "waiting"
    grandchild = client.enqueue("grandchild", None, queue=qc, depends_on=[child])
    assert client.get_task(parent.id, qa).dependents == (f"{qb}|{child.id}",)  # type: ignore[union-attr]
    client.run(driver.ack(client.settings, client.run(driver.dequeue(client.settings, qa))))
    info = client.get_task(child.id, qb)
    assert info is not None and info.state == TaskState.WAITING and info.waiting_on == (f"{qc}|{doomed.id}",)
    leased = client.run(driver.dequeue(client.settings, qc))
    assert [t.id for t in leased] == [doomed.id]
    assert client.run(driver.fail(client.settings, leased[0], "gone", "permanent")) == "dead"
    # dead dependency cancels the child (on another primary) and, by cascade, the grandchild
    assert client.get_task(child.id, qb).state == TaskState.CANCELLED  # type: ignore[union-attr]
    assert client.get_task(grandchild.id, qc).state == TaskState.CANCELLED  # type: ignore[union-attr]


def test_dependency_release_across_primaries(fresh_cluster: ClusterSet, client: Client) -> None:
    qa, qb = spread_queues(fresh_cluster, 2)
    parents = client.enqueue_many([Task(type="p", queue=qa), Task(type="p", queue=qb)])
    child = client.enqueue("c", None, queue=qb, depends_on=parents)
    for q in (qa, qb):
        leased = [t for t in client.run(driver.dequeue(client.settings, q)) if t.id != child.id]
        client.run(driver.ack(client.settings, leased))
    assert client.get_task(child.id).state == TaskState.PENDING  # type: ignore[union-attr]
    assert [t.id for t in client.run(driver.dequeue(client.settings, qb))] == [child.id]


def test_pause_blocks_dequeue_until_resume(fresh_cluster: ClusterSet, client: Client) -> None:
    q = spread_queues(fresh_cluster, 3)[2]
    client.enqueue("job", None, queue=q)
    assert client.call(admin.pause, q) is True
    assert client.call(inspect.queue, q).paused is True  # type: ignore[union-attr]
    assert client.run(driver.dequeue(client.settings, q)) == []
    assert client.call(admin.resume, q) is True
    assert len(client.run(driver.dequeue(client.settings, q))) == 1


def _present_on(c: ClusterSet) -> list[bool]:
    lib = lua.library()
    found = []
    for port in c.primary_ports():
        r = c.client(port)
        found.append(any(lib.name in str(x) for x in r.function_list(library=lib.name)))
        r.close()
    return found


def _flush_functions(c: ClusterSet) -> None:
    for port in c.primary_ports():  # as after FUNCTION FLUSH, or a primary added empty
        r = c.client(port)
        r.function_flush()
        r.close()


def test_the_library_is_loaded_on_every_primary_after_function_flush(
    fresh_cluster: ClusterSet, client: Client
) -> None:
    queues = spread_queues(fresh_cluster)
    client.enqueue_many([Task(type="warm", queue=q) for q in queues])
    _flush_functions(fresh_cluster)
    results = client.enqueue_many([Task(type="job", queue=q) for q in queues])  # pipeline path
    assert [r.status for r in results] == ["new"] * 3
    assert _present_on(fresh_cluster) == [True] * 3
    _flush_functions(fresh_cluster)
    assert client.call(admin.pause, queues[0]) is True  # single-call path
    assert _present_on(fresh_cluster) == [True] * 3
    # replicas have it by replication: a read-only call on each answers the version
    for port in fresh_cluster.primary_ports():
        for replica in fresh_cluster.replica_of(port):
            r = fresh_cluster.client(replica)
            wait_for("library replicated", partial(r.fcall_ro, lua.library().function("version"), 0), 30)
            r.close()


async def test_fcall_is_routed_by_its_keys_without_asking_the_server(
    fresh_cluster: ClusterSet, client: Client
) -> None:
    """redis-py asks a node (COMMAND GETKEYS, a round trip) for the keys of every FCALL;
    rediq's cluster clients read them from the command line, piped or not, sync or async."""
    queues = spread_queues(fresh_cluster)
    client.enqueue("warm", None, queue=queues[0])  # library loaded, slots known
    for port in fresh_cluster.ports:
        r = fresh_cluster.client(port)
        r.config_resetstat()
        r.close()
    client.enqueue_many([Task(type="job", queue=q) for q in queues])  # pipeline
    assert client.call(admin.pause, queues[1]) is True  # single call
    async with AsyncClient(fresh_cluster.url) as aio:
        await aio.enqueue_many([Task(type="a", queue=q) for q in queues])
        await aio.enqueue("a", None, queue=queues[2])
    fcalls = getkeys = 0
    for port in fresh_cluster.ports:
        r = fresh_cluster.client(port)
        stats = r.info("commandstats")
        fcalls += int(stats.get("cmdstat_fcall", {}).get("calls", 0))
        getkeys += int(stats.get("cmdstat_command|getkeys", {}).get("calls", 0))
        r.close()
    assert fcalls >= 3 + 1 + 3 + 1 and getkeys == 0


def test_noscript_after_script_flush_in_eval_mode(
    fresh_cluster: ClusterSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(lua.MODE_ENV, "eval")
    queues = spread_queues(fresh_cluster)
    with Client(fresh_cluster.url) as client:
        client.enqueue_many([Task(type="warm", queue=q) for q in queues])
        for port in fresh_cluster.primary_ports():  # as after a failover to a replica with no cache
            r = fresh_cluster.client(port)
            r.script_flush()
            r.close()
        results = client.enqueue_many([Task(type="job", queue=q) for q in queues])  # pipeline path
        assert [r.status for r in results] == ["new"] * 3
        for port in fresh_cluster.primary_ports():
            r = fresh_cluster.client(port)
            r.script_flush()
            r.close()
        assert client.call(admin.pause, queues[0]) is True  # single-call path
    for port in fresh_cluster.primary_ports():  # loaded on every primary
        r = fresh_cluster.client(port)
        assert r.script_exists(lua.script("pause").sha) == [True]
        r.close()


def test_doctor_and_install_functions_check_every_primary(
    fresh_cluster: ClusterSet, client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    hosts = ",".join(f"127.0.0.1:{p}" for p in fresh_cluster.primary_ports())
    worker_url = f"redis+cluster://rediq-worker:{PASSWORD}@{hosts}"
    client.backend.install_functions()
    one = fresh_cluster.client(fresh_cluster.primary_ports()[1])
    one.function_flush()  # one primary lost it (say, a node added later)
    one.close()
    with Client(worker_url) as worker:
        findings = doctor.examine_library(worker.backend, repair=True)
        assert [(f.kind, f.item, f.repaired) for f in findings] == [
            ("function_library_missing", f"127.0.0.1:{fresh_cluster.primary_ports()[1]}", False)
        ]
    capsys.readouterr()
    assert run(cli, ["--redis-url", worker_url, "server", "install-functions", "--check"], "rediq") == 1
    assert capsys.readouterr().out.count("MISSING") == 1
    assert run(cli, ["--redis-url", f"redis+cluster://{hosts}", "server", "install-functions"], "rediq") == 0
    assert sorted(capsys.readouterr().out.split()).count("loaded") == 1
    assert _present_on(fresh_cluster) == [True] * 3
    with Client(worker_url) as worker:
        assert doctor.examine_library(worker.backend) == []


async def test_async_client_on_cluster(fresh_cluster: ClusterSet) -> None:
    queues = spread_queues(fresh_cluster)
    async with AsyncClient(fresh_cluster.url) as client:
        results = await client.enqueue_many([Task(type="a", queue=q) for q in queues for _ in range(3)])
        assert len({r.id for r in results}) == 9
        names = await client.call(inspect.queue_names)
        assert sorted(names) == sorted(queues)
        leased = await client.run(driver.dequeue(client.settings, queues[0], n=5))
        assert len(leased) == 3
        assert await client.run(driver.ack(client.settings, leased)) == []
        page = await client.call(inspect.page, queues[0], TaskState.COMPLETED)
        assert page.total == 3
        assert await client.call(doctor.examine) == []  # routed SCAN through the asyncio cluster client
        found = await client.run(ops.locate(client.settings, [r.id for r in results]))
        assert {found[r.id] for r in results} == set(queues)


def test_acl_users_on_the_cluster(fresh_cluster: ClusterSet) -> None:
    """The least-privilege worker user suffices for cluster routing (COMMAND, CLUSTER SLOTS)
    and rediq's functions on every primary (installed by the admin); the console user reads
    every primary and cannot write."""
    hosts = ",".join(f"127.0.0.1:{p}" for p in fresh_cluster.primary_ports())
    queues = spread_queues(fresh_cluster)
    with Client(fresh_cluster.url) as admin_client:
        admin_client.backend.install_functions()
    with Client(f"redis+cluster://rediq-worker:{PASSWORD}@{hosts}") as worker:
        worker.backend.ensure_scripts()  # the version check on every primary, as a worker's start
        results = worker.enqueue_many([Task(type="acl", queue=q) for q in queues])
        jobs = worker.run(driver.dequeue(worker.settings, queues[0]))
        assert worker.run(driver.ack(worker.settings, jobs)) == []
    with Client(f"redis+cluster://rediq-console:{PASSWORD}@{hosts}") as console:
        counts = {s.name: (s.count("pending"), s.count("completed")) for s in console.call(inspect.queues)}
        assert counts == {queues[0]: (0, 1), queues[1]: (1, 0), queues[2]: (1, 0)}
        assert console.get_task(results[1].id) is not None
        with pytest.raises(ReadOnlyError):
            console.enqueue("nope", None, queue=queues[1])
        with pytest.raises(ReadOnlyError):
            console.call(admin.pause, queues[2])


def test_doctor_and_explain_on_the_cluster(fresh_cluster: ClusterSet, client: Client) -> None:
    """The doctor SCANs per queue: on a cluster that SCAN must run on the queue's node (a
    keyless SCAN goes to every primary and its cursors cannot be continued)."""
    queues = spread_queues(fresh_cluster)
    results = client.enqueue_many([Task(type="x", queue=q) for q in queues])
    orphan_queue = queues[1]
    orphan_key = client.settings.keyspace.queue(orphan_queue).task("orphan")
    direct = fresh_cluster.client(fresh_cluster.node_for_key(orphan_key))
    direct.hset(orphan_key, mapping={"id": "orphan", "type": "x", "state": "pending", "priority": "50"})
    direct.close()
    findings = client.call(doctor.examine)
    assert [(f.queue, f.item) for f in findings] == [(orphan_queue, "orphan")], findings
    repaired = client.call(doctor.examine, True)
    assert all(f.repaired for f in repaired) and client.call(doctor.examine) == []
    explanation = client.call(explain.why, results[2].id)
    assert explanation is not None
    assert client.call(admin.pause, queues[0]) is True
    assert [a.action for a in client.call(inspect.audit)] == ["pause"]
