"""Threads from the CPUs a process may use, passive OpenMP waiting, and a torch-free `elmo` start."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from elmo_train import runtime
from elmo_train.errors import UserError


def fake_root(tmp_path: Path, proc_cgroup: str, files: dict[str, str]) -> Path:
    """A directory that looks like / to `cgroup_cpu_limit`: /proc/self/cgroup and cgroup files."""
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text(proc_cgroup)
    for name, text in files.items():
        path = tmp_path / "sys/fs/cgroup" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_cgroup_v2_quota_is_the_tightest_on_the_path(tmp_path):
    root = fake_root(
        tmp_path,
        "0::/user.slice/job\n",
        {
            "cpu.max": "max 100000\n",
            "user.slice/cpu.max": "300000 100000\n",  # an ancestor's 3 CPUs
            "user.slice/job/cpu.max": "150000 100000\n",  # the job's 1.5
        },
    )
    assert runtime.cgroup_cpu_limit(root) == 1.5


def test_cgroup_v2_without_a_quota(tmp_path):
    root = fake_root(tmp_path, "0::/\n", {"cpu.max": "max 100000\n"})
    assert runtime.cgroup_cpu_limit(root) is None


def test_cgroup_v1_quota_and_a_container_without_cgroup_namespace(tmp_path):
    # /proc/self/cgroup names the host's path; inside the container the mount is its own cgroup.
    root = fake_root(
        tmp_path,
        "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n",
        {"cpu,cpuacct/cpu.cfs_quota_us": "200000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
    )
    assert runtime.cgroup_cpu_limit(root) == 2.0


def test_cgroup_v1_unlimited_and_no_cgroup_files(tmp_path):
    root = fake_root(
        tmp_path,
        "1:cpu:/\n",
        {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"},
    )
    assert runtime.cgroup_cpu_limit(root) is None
    assert runtime.cgroup_cpu_limit(tmp_path / "nowhere") is None


@pytest.mark.parametrize(
    ("affinity", "limit", "cpus"),
    [(8, None, 8), (8, 2.5, 2), (8, 0.5, 1), (2, 4.0, 2)],
)
def test_usable_cpus_is_the_affinity_mask_capped_by_the_quota(monkeypatch, affinity, limit, cpus):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(affinity)), raising=False)
    monkeypatch.setattr(runtime, "cgroup_cpu_limit", lambda root=None: limit)
    assert runtime.usable_cpus() == cpus


def test_auto_threads_leave_a_cpu_per_dataloader_worker(monkeypatch):
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 4)
    assert runtime.choose_threads("auto", workers=1, environ={}) == (
        3,
        "4 usable CPUs minus 1 DataLoader worker",
    )
    assert runtime.choose_threads("auto", workers=6, environ={})[0] == 1
    assert runtime.choose_threads("auto", workers=0, environ={"OMP_NUM_THREADS": ""})[0] == 4


def test_the_users_omp_num_threads_wins_over_auto_and_a_number_over_both(monkeypatch):
    monkeypatch.setattr(runtime, "usable_cpus", lambda: 4)
    omp = {"OMP_NUM_THREADS": "3"}
    assert runtime.choose_threads("auto", workers=1, environ=omp) == (3, "OMP_NUM_THREADS=3")
    assert runtime.choose_threads("2", workers=1, environ=omp) == (2, "threads=2")
    assert runtime.choose_threads(5, environ=omp)[0] == 5


@pytest.mark.parametrize("setting", ["0", "-1", "two", "1.5", ""])
def test_a_bad_thread_count_is_a_user_error(setting):
    with pytest.raises(UserError, match=f"threads={setting}: expected auto or a number"):
        runtime.choose_threads(setting)


def test_set_threads_applies_the_choice_and_exports_an_explicit_one(monkeypatch):
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    try:
        assert runtime.set_threads("auto", workers=1).startswith("threads: 1 (OMP_NUM_THREADS=1")
        assert torch.get_num_threads() == 1
        assert runtime.set_threads("2") == "threads: 2 (threads=2; threads=N to change)"
        assert torch.get_num_threads() == 2
        assert os.environ["OMP_NUM_THREADS"] == "2"  # Lightning's DDP ranks inherit it
    finally:
        torch.set_num_threads(before)


def test_threads_wait_passively_unless_the_user_chose(monkeypatch):
    env = {}
    runtime.prefer_passive_wait(env)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    for users in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "300000"}):
        env = dict(users)
        runtime.prefer_passive_wait(env)
        assert env == users


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=environ | env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result


def test_the_package_and_the_command_load_without_torch():
    out = run_python(
        "import sys, elmo_train, elmo_train.cli, elmo_train.runtime\n"
        "print('torch' in sys.modules)\n"
        "from elmo_train import Elmo, Embedder, LanguageModel, batch_to_ids\n"
        "print(Elmo.__name__, Embedder.__name__, LanguageModel.__name__, batch_to_ids.__name__)\n"
        "print(sorted(set(elmo_train.__all__) - set(dir(elmo_train))))\n"
        "try:\n    elmo_train.Missing\nexcept AttributeError as e:\n    print(e)\n"
    ).stdout
    assert out.splitlines() == [
        "False",
        "Elmo Embedder LanguageModel batch_to_ids",
        "[]",
        "module 'elmo_train' has no attribute 'Missing'",
    ]


def test_a_command_sets_the_wait_policy_before_torch_loads_and_chooses_threads(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text("the cat sat\nthe dog sat\n")
    run = run_python(
        "import os, sys\n"
        "from elmo_train import cli, runtime\n"
        f"cli.main(['vocab', '--input', {str(corpus)!r}, '--output', {str(tmp_path / 'v.txt')!r}])\n"
        "import torch\n"
        "print(os.environ['OMP_WAIT_POLICY'], torch.get_num_threads(), runtime.usable_cpus())\n",
        OMP_DISPLAY_ENV="VERBOSE",  # OpenMP prints its settings as it starts
    )
    policy, threads, usable = run.stdout.splitlines()[-1].split()
    assert (policy, threads) == ("PASSIVE", usable)  # no DataLoader workers in `elmo vocab`
    if "GOMP_SPINCOUNT" in run.stderr:  # GNU OpenMP (Linux wheels): it read the policy
        assert "GOMP_SPINCOUNT = '0'" in run.stderr  # not 300000, its default: no spinning


def test_a_forced_cpu_capability_gets_its_own_compile_cache():
    env = {"ATEN_CPU_CAPABILITY": "AVX2"}
    runtime.compile_cache_per_capability(env)
    assert env["TORCHINDUCTOR_CACHE_DIR"].endswith("-avx2")
    native, chosen = {}, {"ATEN_CPU_CAPABILITY": "default", "TORCHINDUCTOR_CACHE_DIR": "/x"}
    runtime.compile_cache_per_capability(native)
    runtime.compile_cache_per_capability(chosen)
    assert native == {} and chosen["TORCHINDUCTOR_CACHE_DIR"] == "/x"  # native; the user's
