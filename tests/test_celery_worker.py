"""The real worker process finds every task: Celery finds tasks by module name, so a task
module that moved out of its app's autodiscovery would be missing only in a real worker
(eager and in-thread workers import the test's modules and never notice)."""
import importlib
import os
import pkgutil
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import dashboard

ROOT = Path(__file__).resolve().parent.parent


def tasks_defined_in_the_code():
    """Every task the project defines: import every dashboard module, then ask the app."""
    from dashboard.celery import app

    for module in pkgutil.walk_packages(dashboard.__path__, "dashboard."):
        importlib.import_module(module.name)
    return {name for name in app.tasks if not name.startswith("celery.")}


def tasks_the_worker_registers():
    """The `[tasks]` list a real `celery -A dashboard worker` prints as it starts."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--pool=solo", "--loglevel=INFO",
         "--hostname=registration-check@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 60
        for line in worker.stdout:
            lines.append(line)
            if " ready." in line or time.monotonic() > deadline:
                break
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    output = "".join(lines)
    assert "[tasks]" in output, output[-2000:]
    block = output.split("[tasks]", 1)[1]
    return set(re.findall(r"^\s+\. (\S+)", block, re.M)) - {name for name in re.findall(r"^\s+\. (celery\.\S+)", block, re.M)}


def test_a_real_worker_registers_every_eventscope_task():
    """Including the alert task the collector sends by name (it may not import dashboard)."""
    from collector.deadletters.alerts import SEND_ALERT

    defined = tasks_defined_in_the_code()
    assert {"eventscope.publish_message", "eventscope.retry_dead_letter", "eventscope.run_retry_job",
            SEND_ALERT} <= defined
    assert tasks_the_worker_registers() == defined
