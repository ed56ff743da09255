#!/usr/bin/env python3
"""Push and pull through a local registry: strata beside `docker push`/`docker pull` and
`skopeo copy`, with the floor (curl of the same blobs), in one run (issue 11 §5).

Usage (as root, dockerd running, docker-registry and skopeo installed, strata built with
--release):
    python3 bench/registry/run.py [-n 3] [--size-mb 500] [--layers 20] [--strata target/release/strata]

Two images, the same bytes for every tool (built by strata, `strata save`d, `docker load`ed
and copied by skopeo into an OCI layout):
  big    one layer of SIZE_MB of incompressible data on the busybox base;
  many   LAYERS layers of 5 MB each on the same base.
Each sample starts after a sync(2) (no earlier sample's dirty pages in the disk queue), from an
empty registry (its storage removed, the registry restarted) for a push, and from a registry
that holds the image and a client without it for a pull (strata: a fresh root; docker: `docker
rmi` of the image; skopeo: a new OCI directory). With --baseline, a second strata binary is
timed beside the first in the same loop (a before/after pair under the same load); the first
one's root is the one the "all present" pull uses. The floor of a pull is curl fetching every
blob of the manifest, 3 at a time; of a push, curl uploading every blob (monolithic PUT), 5 at
a time. "up to date" is a second strata pull with everything present. Each image is pulled
twice: as the floor pushed it (skopeo's OCI copy: gzip layers, what `docker push` sends too)
and as `strata push` sent it (a build's layers as strata stores them: uncompressed). Medians over n; the table goes to stdout and bench/registry/results/.
"""
import argparse
import concurrent.futures
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DOCKER = "/usr/bin/docker"


def sh(cmd, env=None, quiet=True):
    return subprocess.run(cmd, shell=True, check=True, env=env,
                          stdout=subprocess.DEVNULL if quiet else None,
                          stderr=subprocess.DEVNULL if quiet else None)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """Debian's docker-registry on 127.0.0.1, storage in a temp dir."""

    def __init__(self, work):
        self.work = work
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.proc = None

    def start(self, empty):
        self.stop()
        storage = os.path.join(self.work, "registry")
        if empty:
            shutil.rmtree(storage, ignore_errors=True)
        os.makedirs(storage, exist_ok=True)
        config = os.path.join(self.work, "registry.yml")
        with open(config, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                    f"    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
                    f"http:\n  addr: {self.host}\n")
        self.proc = subprocess.Popen(["docker-registry", "serve", config],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                return
            except Exception:
                time.sleep(0.05)
        raise SystemExit("docker-registry did not start")

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait()
            self.proc = None


def timed(fn):
    # Every sample starts with no dirty pages of the ones before: a tool that fsyncs (strata
    # makes every blob durable) would otherwise wait behind the writeback of a tool that
    # does not (docker), or of the registry's writes.
    os.sync()
    t = time.monotonic()
    fn()
    return time.monotonic() - t


def make_images(strata, root, work, size_mb, layers):
    env = dict(os.environ, STRATA_ROOT=root)
    base = os.path.join(work, "base.tar")
    sh(f"{REPO}/testdata/mkbase.sh {base}")
    sh(f"{strata} import {base} base:1", env=env)
    ctx = os.path.join(work, "ctx")
    os.makedirs(ctx, exist_ok=True)
    with open(os.path.join(ctx, "big.Dockerfile"), "w") as f:
        f.write(f"FROM base:1\nRUN dd if=/dev/urandom of=/big bs=1M count={size_mb} 2>/dev/null\n")
    with open(os.path.join(ctx, "many.Dockerfile"), "w") as f:
        f.write("FROM base:1\n")
        for i in range(layers):
            f.write(f"RUN dd if=/dev/urandom of=/layer{i} bs=1M count=5 2>/dev/null\n")
    for name in ("big", "many"):
        sh(f"{strata} build --network none -t bench-{name}:1 -f {ctx}/{name}.Dockerfile {ctx}",
           env=env)
        tar = os.path.join(work, f"{name}.tar")
        sh(f"{strata} save -o {tar} bench-{name}:1", env=env)
        sh(f"{DOCKER} load -i {tar}")
        sh(f"skopeo copy -q docker-archive:{tar} oci:{work}/oci-{name}:1")


def curl_pull(host, name):
    """Every blob of the image's manifest (config and layers), 3 at a time, to /dev/null."""
    req = urllib.request.Request(
        f"http://{host}/v2/{name}/manifests/1",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json,"
                 "application/vnd.docker.distribution.manifest.v2+json"})
    manifest = json.load(urllib.request.urlopen(req))
    digests = [manifest["config"]["digest"]] + [l["digest"] for l in manifest["layers"]]
    cmds = [f"curl -sf -o /dev/null http://{host}/v2/{name}/blobs/{d}" for d in digests]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda c: sh(c), cmds))


def curl_push(host, name, oci_dir):
    """Every blob of the OCI layout (monolithic POST+PUT), 5 at a time, then the manifest."""
    index = json.load(open(os.path.join(oci_dir, "index.json")))
    mdesc = index["manifests"][0]
    blob = lambda d: os.path.join(oci_dir, "blobs", *d.split(":"))
    manifest = json.load(open(blob(mdesc["digest"])))
    digests = [manifest["config"]["digest"]] + [l["digest"] for l in manifest["layers"]]

    def upload(d):
        out = subprocess.run(
            ["curl", "-sfi", "-X", "POST", f"http://{host}/v2/{name}/blobs/uploads/"],
            check=True, capture_output=True, text=True).stdout
        loc = [l.split(":", 1)[1].strip() for l in out.splitlines()
               if l.lower().startswith("location:")][0]
        sep = "&" if "?" in loc else "?"
        url = loc if loc.startswith("http") else f"http://{host}{loc}"
        sh(f"curl -sf -X PUT -H 'Content-Type: application/octet-stream' "
           f"--data-binary @{blob(d)} '{url}{sep}digest={d}'")

    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        list(pool.map(upload, digests))
    sh(f"curl -sf -X PUT -H 'Content-Type: {mdesc['mediaType']}' "
       f"--data-binary @{blob(mdesc['digest'])} http://{host}/v2/{name}/manifests/1")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--size-mb", type=int, default=500)
    ap.add_argument("--layers", type=int, default=20)
    ap.add_argument("--strata", default=os.path.join(REPO, "target", "release", "strata"))
    ap.add_argument("--baseline", help="another strata binary, timed beside (interleaved) as "
                    "\"strata (baseline)\"")
    a = ap.parse_args()
    strata = os.path.abspath(a.strata)
    stratas = [("strata", strata)]
    if a.baseline:
        stratas.append(("strata (baseline)", os.path.abspath(a.baseline)))
    work = tempfile.mkdtemp(prefix="strata-bench-registry-")
    reg = Registry(work)
    src_root = os.path.join(work, "src-root")
    rows = {}
    loads = []
    try:
        make_images(strata, src_root, work, a.size_mb, a.layers)
        for rep in range(a.n):
            for image in ("big", "many"):
                name = f"bench-{image}"
                ref = f"{reg.host}/{name}:1"
                env = dict(os.environ, STRATA_ROOT=src_root)
                sh(f"{strata} tag {name}:1 {ref}", env=env)
                sh(f"{DOCKER} tag {name}:1 {ref}")
                push = {
                    tool: (lambda b=binary: sh(f"{b} push {ref}", env=env))
                    for tool, binary in stratas
                }
                push.update({
                    "docker": lambda: sh(f"{DOCKER} push {ref}"),
                    "skopeo": lambda: sh(f"skopeo copy -q --dest-tls-verify=false "
                                         f"oci:{work}/oci-{image}:1 docker://{ref}"),
                    "floor (curl)": lambda: curl_push(reg.host, name, f"{work}/oci-{image}"),
                })
                for tool, fn in push.items():
                    reg.start(empty=True)
                    loads.append(os.getloadavg()[0])
                    rows.setdefault((image, "push", tool), []).append(timed(fn))
                # The registry now holds the image as the floor pushed it last: skopeo's OCI
                # copy, gzip layers (what docker push also sends). Strata's own push (its
                # build's layers as stored: uncompressed) goes beside it under another name,
                # and both are pulled, each by every tool.
                reg.start(empty=False)
                raw = f"{reg.host}/{name}-raw:1"
                sh(f"{strata} tag {name}:1 {raw}", env=env)
                sh(f"{strata} push {raw}", env=env)
                pull_root = os.path.join(work, "pull-root")
                for op, pref, repo in (("pull", ref, name),
                                       ("pull, uncompressed layers", raw, f"{name}-raw")):

                    def strata_pull(binary, pref=pref):
                        shutil.rmtree(pull_root, ignore_errors=True)
                        return timed(lambda: sh(f"{binary} pull {pref}",
                                                env=dict(os.environ, STRATA_ROOT=pull_root)))

                    def docker_pull(pref=pref):
                        # Every tag of the image, so that docker has none of its layers.
                        subprocess.run(f"{DOCKER} rmi -f {ref} {raw} {name}:1", shell=True,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        return timed(lambda: sh(f"{DOCKER} pull {pref}"))

                    def skopeo_pull(pref=pref):
                        shutil.rmtree(f"{work}/pulled", ignore_errors=True)
                        return timed(lambda: sh(f"skopeo copy -q --src-tls-verify=false "
                                                f"docker://{pref} oci:{work}/pulled:1"))

                    pulls = [(tool, lambda b=binary: strata_pull(b))
                             for tool, binary in stratas]
                    for tool, fn in (*reversed(pulls), ("docker", docker_pull),
                                     ("skopeo", skopeo_pull),
                                     ("floor (curl)", lambda repo=repo: timed(
                                         lambda: curl_pull(reg.host, repo)))):
                        loads.append(os.getloadavg()[0])
                        rows.setdefault((image, op, tool), []).append(fn())
                    rows.setdefault((image, f"{op}, all present", "strata"), []).append(
                        timed(lambda pref=pref: sh(f"{strata} pull {pref}",
                                                   env=dict(os.environ,
                                                            STRATA_ROOT=pull_root))))
                    sh(f"{DOCKER} tag {pref} {name}:1")
    finally:
        reg.stop()
    lines = [f"| image | operation | tool | median s [min–max] | vs docker |",
             "|---|---|---|---|---|"]
    for (image, op, tool), samples in rows.items():
        med = statistics.median(samples)
        docker = rows.get((image, op, "docker"))
        ratio = f"{med / statistics.median(docker):.2f}×" if docker else "–"
        lines.append(f"| {image} | {op} | {tool} | {med:.3f} [{min(samples):.3f}–"
                     f"{max(samples):.3f}] | {ratio} |")
    lines.append("")
    lines.append(f"n={a.n}; big = 1 layer of {a.size_mb} MB, many = {a.layers} layers of 5 MB "
                 f"(+ the busybox base); 1-minute load at the samples: median "
                 f"{statistics.median(loads):.2f} [{min(loads):.2f}–{max(loads):.2f}]")
    table = "\n".join(lines)
    print(table)
    out = os.path.join(HERE, "results")
    os.makedirs(out, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    with open(os.path.join(out, f"table-{stamp}.md"), "w") as f:
        f.write(table + "\n")
    shutil.rmtree(work, ignore_errors=True)
    for image in ("big", "many"):
        subprocess.run(f"{DOCKER} rmi -f bench-{image}:1 {reg.host}/bench-{image}:1 "
                       f"{reg.host}/bench-{image}-raw:1",
                       shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main())
