"""The containers' image of the runtime tests, made from busybox-static and imported (``docker
import -``, ``podman import -``: no registry is reachable): the applets the tests run, and
httpd's CGI script ``/cgi-bin/ip``, which prints the client address the container saw;
``HTTPD`` is the command that serves it."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "httpd", "nc", "sleep", "wget", "timeout", "ip", "cat", "echo", "true")
CGI = '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "$REMOTE_ADDR"\n'
HTTPD = ("httpd", "-f", "-p", "80", "-h", "/www")


def rootfs_tar() -> bytes:
    """The image's root filesystem as a tar stream."""
    with tempfile.TemporaryDirectory() as d:
        rootfs = Path(d)
        (rootfs / "bin").mkdir()
        shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
        for applet in APPLETS:
            (rootfs / "bin" / applet).symlink_to("busybox")
        cgi = rootfs / "www" / "cgi-bin" / "ip"
        cgi.parent.mkdir(parents=True)
        cgi.write_text(CGI)
        cgi.chmod(0o755)
        return subprocess.run(["tar", "-C", d, "-c", "."], capture_output=True,
                              check=True).stdout
