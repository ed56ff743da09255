"""Fresh filesystems and a private dockerd for `run.py --fs ext4|xfs`.

Each cold sample of each tool gets a filesystem made for it (`mkfs` on a sparse loop file,
mounted under the bench's work dir): strata's root or docker's data root lives on it, so no
sample inherits another's deleted inodes, journal or free-space layout. Everything made here
is undone on every exit path: the context managers unmount, stop and delete in `finally`,
and `run.py` turns SIGTERM into KeyboardInterrupt so Ctrl-C and `kill` unwind them too.
"""
import contextlib
import os
import shutil
import signal
import subprocess
import time


def log(msg):
    import sys
    print("[fs %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def check_tools(fs):
    """The mkfs of `fs` (xfsprogs is not installed by default: say so)."""
    mkfs = "mkfs." + fs
    if not shutil.which(mkfs):
        pkg = {"ext4": "e2fsprogs", "xfs": "xfsprogs"}[fs]
        raise SystemExit("%s not found: apt-get install %s" % (mkfs, pkg))


def _run(cmd, check=True):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if check and r.returncode:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), r.returncode,
                                                   r.stdout.decode(errors="replace")[-500:]))
    return r


def _unmount(mnt):
    """Unmounts `mnt` and whatever is mounted below it (overlays of docker's shims)."""
    with open("/proc/self/mountinfo") as f:
        below = [line.split()[4] for line in f]
    below = [m for m in below if m == mnt or m.startswith(mnt + "/")]
    for m in sorted(set(below), key=len, reverse=True):
        if _run(["umount", m], check=False).returncode:
            time.sleep(1)
            if _run(["umount", m], check=False).returncode:
                log("umount %s failed; detaching it lazily" % m)
                _run(["umount", "-l", m], check=False)


@contextlib.contextmanager
def fresh(fs, backing_dir, name, size="12G"):
    """A new `fs` filesystem (ext4 with its journal, or xfs) on a sparse loop file in
    `backing_dir`, mounted at `backing_dir/<name>.mnt`; yields the mount point. ext4's inode
    tables and journal are written at mkfs time (no lazy init thread during the samples)."""
    os.makedirs(backing_dir, exist_ok=True)
    img = os.path.join(backing_dir, name + ".img")
    mnt = os.path.join(backing_dir, name + ".mnt")
    try:
        with open(img, "wb") as f:
            f.truncate(_bytes(size))
        if fs == "ext4":
            _run(["mkfs.ext4", "-q", "-F", "-O", "has_journal",
                  "-E", "lazy_itable_init=0,lazy_journal_init=0", img])
        else:
            _run(["mkfs.xfs", "-q", "-f", img])
        os.makedirs(mnt, exist_ok=True)
        _run(["mount", "-o", "loop", img, mnt])
        yield mnt
    finally:
        if os.path.isdir(mnt):
            _unmount(mnt)
            with contextlib.suppress(OSError):
                os.rmdir(mnt)
        with contextlib.suppress(OSError):
            os.unlink(img)


def _bytes(size):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)


def _descendants(pid):
    """`pid` and every process below it."""
    kids = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/stat" % p) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(p))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


@contextlib.contextmanager
def dockerd(data_root, run_dir, log_path, docker="/usr/bin/docker", dockerd_bin="dockerd"):
    """A dockerd of our own: data root on the fresh filesystem, exec root, pid file and socket
    under `run_dir` (deleted afterwards), no bridge and no iptables rules (builds use
    `--network=none`), containerd namespaces of its own (should it find a system containerd
    to use). Never talks to a system dockerd. Yields (env with DOCKER_HOST, daemon pids:
    dockerd and its containerd, for the harness's CPU accounting)."""
    os.makedirs(run_dir, exist_ok=True)
    sock = os.path.join(run_dir, "docker.sock")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    logf = open(log_path, "ab")
    cmd = [dockerd_bin, "--data-root", data_root, "--exec-root", os.path.join(run_dir, "exec"),
           "--pidfile", os.path.join(run_dir, "docker.pid"), "-H", "unix://" + sock,
           "--bridge", "none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
           "--containerd-namespace", "strata-coldbench",
           "--containerd-plugins-namespace", "strata-coldbench-plugins",
           "--log-level", "warn"]
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    env = dict(os.environ, DOCKER_HOST="unix://" + sock, DOCKER_BUILDKIT="1")
    try:
        for _ in range(120):
            if proc.poll() is not None:
                raise RuntimeError("dockerd exited (%d), see %s" % (proc.returncode, logf.name))
            if subprocess.run([docker, "info"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError("dockerd did not answer in 60 s, see %s" % logf.name)
        yield env, tuple(_descendants(proc.pid))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                log("dockerd %d did not stop in 60 s; killing its process group" % proc.pid)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        logf.close()
        _unmount(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
