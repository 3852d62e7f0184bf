"""Install the requirements of a run's user workloads in a workload image (runner/images/workloads.py).

Runs at build time, as root, with the image's interpreter: ``python3 install-requirements.py
PLAN``. PLAN (JSON) lists ``{"id", "target", "find_links", "requirements"}`` entries; each is
``pip install --no-index --find-links FIND_LINKS --target TARGET REQUIREMENTS``. A failed
install does not fail the build: the status file (``status`` in PLAN) records, per workload,
whether it installed and pip's output, and gilmatrix reads it back to skip that workload's cells.
"""

import json
import os
import shutil
import subprocess
import sys


def main(plan_path):
    with open(plan_path) as f:
        plan = json.load(f)
    env = dict(os.environ, PIP_ROOT_USER_ACTION="ignore", PIP_NO_CACHE_DIR="1", PIP_NO_INPUT="1")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    status = {}
    for item in plan["workloads"]:
        target = item["target"]
        command = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", item["find_links"]]
        command += ["--target", target, *item["requirements"]]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
            ok, output = proc.returncode == 0, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired:
            ok, output = False, "ERROR: pip took over an hour"
        if not ok:
            shutil.rmtree(target, ignore_errors=True)
        status[item["id"]] = {"ok": ok, "output": output[-20000:]}
        print(f"{item['id']}: {'installed' if ok else 'FAILED'}")
        print(output[-3000:])
    os.makedirs(os.path.dirname(plan["status"]), exist_ok=True)
    with open(plan["status"], "w") as f:
        json.dump(status, f, indent=1, sort_keys=True)
    # readable by every user: the benchmarks run as an unprivileged one (a+rX)
    for root, _dirs, files in os.walk(os.path.dirname(plan["status"])):
        os.chmod(root, os.stat(root).st_mode | 0o555)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                mode = os.stat(path).st_mode
                os.chmod(path, mode | 0o444 | (0o111 if mode & 0o111 else 0))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
