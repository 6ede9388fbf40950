"""The e2e's Sentinel fleet, read and driven from the control machine: redis-cli on the
Redis hosts (over TLS, with the passwords), ``ragfleet status`` on exec1, and the rows and
chunks of a knowledge base (test_redis_failover.py)."""

from __future__ import annotations

import json
import shlex
import time
from typing import Any

from deployment import PYTHON, RAGFLEET, Deployment
from testbed import log

SERVERS = ("redis", "db", "es")
PORT, SENTINEL_PORT, MASTER_NAME = 6379, 26379, "ragfleet"
TLS = "--tls --cacert /etc/redis/tls/ca.crt"


def address(deployment: Deployment, host: str) -> str:
    return deployment.inventory["all"]["hosts"][host]["ansible_host"]


def host_of(deployment: Deployment, master: str) -> str:
    ip = master.rpartition(":")[0]
    return next(h for h in SERVERS if address(deployment, h) == ip)


def redis_cli(deployment: Deployment, host: str, args: str, sentinel: bool = False) -> str:
    """redis-cli on *host* to its own server (or sentinel), over TLS, with the password."""
    secret = deployment.secrets["REDIS_SENTINEL_PASSWORD" if sentinel else "REDIS_PASSWORD"]
    port = SENTINEL_PORT if sentinel else PORT
    command = (
        f"REDISCLI_AUTH={secret} timeout 5 redis-cli {TLS} -h {address(deployment, host)} "
        f"-p {port} --no-auth-warning --raw {args}"
    )
    return deployment.ssh(host, command, check=False).stdout


def replication(deployment: Deployment, host: str) -> dict[str, str]:
    text = redis_cli(deployment, host, "INFO replication")
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def sentinel_masters(deployment: Deployment, hosts: tuple[str, ...] = SERVERS) -> dict[str, str]:
    """The master each sentinel on *hosts* names ("" when it does not answer)."""
    named = {}
    for host in hosts:
        answer = redis_cli(
            deployment, host, f"SENTINEL get-master-addr-by-name {MASTER_NAME}", sentinel=True
        ).split()
        named[host] = ":".join(answer) if len(answer) == 2 else ""
    return named


def status_master(deployment: Deployment) -> str:
    """The master ``ragfleet status --json`` on exec1 names ("" while it cannot say)."""
    result = deployment.ssh("exec1", f"{RAGFLEET} status --json", check=False)
    try:
        return json.loads(result.stdout).get("redis_master", "")
    except ValueError:
        return ""


def agreed_master(deployment: Deployment, hosts: tuple[str, ...] = SERVERS) -> str:
    named = set(sentinel_masters(deployment, hosts).values())
    return named.pop() if len(named) == 1 and "" not in named else ""


def synced_replica_of(deployment: Deployment, host: str, master: str) -> bool:
    info = replication(deployment, host)
    return (
        info.get("role") == "slave"
        and f"{info.get('master_host')}:{info.get('master_port')}" == master
        and info.get("master_link_status") == "up"
        and info.get("master_sync_in_progress") == "0"
    )


# Run on exec1 with the executors' venv, as root: the rows of a knowledge base's documents
# and tasks (MariaDB, as the executors log in), and each document's chunks in the store.
PROBE = """
import json, sys, urllib.request, pymysql
from ruamel.yaml import YAML
config = YAML(typ="safe").load(open("/etc/ragfleet/ragfleet.yaml"))
db, store = config["database"], config["doc_store"]["hosts"][0]
kb_name, ids_file = sys.argv[1], sys.argv[2]
conn = pymysql.connect(host=db["host"], port=db["port"], user=db["user"], password=db["password"],
                       database=db["name"], ssl={"ca": db["ssl_ca"]}, autocommit=True)
cur = conn.cursor()
cur.execute("SELECT id, tenant_id FROM knowledgebase WHERE name = %s", (kb_name,))
kb = cur.fetchone()
docs, tasks = {}, []
if kb:
    cur.execute("SELECT id, chunk_num FROM document WHERE kb_id = %s", (kb[0],))
    docs = dict(cur.fetchall())
    cur.execute("SELECT t.id, t.progress, t.progress_msg FROM task t JOIN document d "
                "ON t.doc_id = d.id WHERE d.kb_id = %s", (kb[0],))
    tasks = list(cur.fetchall())
ids = [line.strip() for line in open(ids_file)] if ids_file != "-" else []
if ids:
    marks = ",".join(["%s"] * len(ids))
    cur.execute(f"SELECT id, progress, progress_msg FROM task WHERE id IN ({marks})", ids)
    tasks += list(cur.fetchall())
out = {"docs": len(docs), "tasks": len(tasks), "done": 0, "failed": 0, "begun_twice": 0,
       "chunk_num_off": [], "store_off": []}
for _id, progress, message in tasks:
    out["done"] += progress >= 1
    out["failed"] += progress < 0
    out["begun_twice"] += (message or "").count("Task has been received.") > 1
if sys.argv[3] == "full" and kb:
    for doc_id, chunk_num in docs.items():
        if chunk_num != 1:
            out["chunk_num_off"].append([doc_id, chunk_num])
        body = json.dumps({"query": {"bool": {"filter": [{"term": {"doc_id": doc_id}}]}}})
        request = urllib.request.Request(f"{store}/ragflow_{kb[1]}/_count", body.encode(),
                                         {"Content-Type": "application/json"})
        count = json.load(urllib.request.urlopen(request, timeout=10))["count"]
        if count != 1:
            out["store_off"].append([doc_id, count])
print(json.dumps(out))
"""


def probe(deployment: Deployment, kb: str, ids_file: str = "-", full: bool = False) -> Any:
    args = f"{shlex.quote(kb)} {ids_file} {'full' if full else 'rows'}"
    result = deployment.ssh("exec1", f"{PYTHON} -c {shlex.quote(PROBE)} {args}")
    return json.loads(result.stdout)


def write_documents(deployment: Deployment, kb: str, count: int) -> str:
    """*count* small text documents on exec1, each a few words unique to it (one chunk)."""
    folder = f"/root/{kb}"
    deployment.ssh(
        "exec1",
        f"rm -rf {folder} && mkdir {folder} && for i in $(seq 1 {count}); do "
        f'echo "Document $i of {kb}: the failover e2e writes {kb}w$i and nothing else." '
        f"> {folder}/doc$i.txt; done",
    )
    return folder


def executors(deployment: Deployment, action: str) -> None:
    for host in deployment.instances():
        deployment.ssh(host, f"systemctl {action} ragfleet-executor.target")


def queue_documents(deployment: Deployment, kb: str, count: int) -> None:
    """Submit *count* documents with the executors stopped, then start them: the tasks are
    all queued when the run begins."""
    folder = write_documents(deployment, kb, count)
    executors(deployment, "stop")
    try:
        started = time.monotonic()
        deployment.ssh("exec1", f"{RAGFLEET} submit {folder}/*.txt --kb {kb} -q", check=True)
        log(f"{kb}: {count} documents submitted in {time.monotonic() - started:.1f} s")
    finally:
        executors(deployment, "start")


def sentinel_replicas(deployment: Deployment, host: str) -> dict[str, dict[str, str]]:
    """SENTINEL REPLICAS as the sentinel on *host* sees them: {ip: {field: value}}."""
    lines = redis_cli(deployment, host, f"SENTINEL REPLICAS {MASTER_NAME}", sentinel=True)
    replicas: list[dict[str, str]] = []
    words = lines.splitlines()
    for key, value in zip(words[::2], words[1::2], strict=False):
        if key == "name":
            replicas.append({})
        if replicas:
            replicas[-1][key] = value
    return {r.get("ip", ""): r for r in replicas}
